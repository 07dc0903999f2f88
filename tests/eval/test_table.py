"""mssl.eval.table: the final table's rows, and a note for each baseline the encoder
does not beat (and none for those it beats)."""

from mssl.eval import table


def test_final_table_names_every_baseline_the_encoder_does_not_beat():
  final = {"pretrained/linear_probe": 0.8675, "pretrained/knn": 0.40,
           "random_init/linear_probe": 0.8210, "random_init/knn": 0.43,
           "pixels/linear_probe": 0.9135, "pixels/knn": 0.9575}
  text = table.format_results(final)
  assert "  pretrained encoder         86.75%       40.00%" in text
  assert "          raw pixels         91.35%       95.75%" in text
  assert ("note: the pretrained encoder does not beat raw pixels on the linear probe: "
          "86.75% vs 91.35%.") in text
  assert "does not beat random init on the kNN: 40.00% vs 43.00%." in text
  assert "random init on the linear probe" not in text
  final.update({"pretrained/linear_probe": 0.95, "pretrained/knn": 0.96})
  assert "note" not in table.format_results(final)


def test_a_tie_is_not_beating_and_missing_rows_are_left_out():
  final = {"pretrained/linear_probe": 0.5, "pretrained/knn": 0.6,
           "random_init/linear_probe": 0.5, "random_init/knn": 0.2}
  assert table.unbeaten_baselines(final) == [
      "the pretrained encoder does not beat random init on the linear probe: 50.00% vs "
      "50.00%"]
  text = table.format_results(final)
  assert "raw pixels" not in text and "random init" in text
  assert table.unbeaten_baselines(final, baselines=("pixels",)) == []
