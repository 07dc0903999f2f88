# %% [markdown]
# # A tour of the matrix-information toolkit (`mssl.matrix`)
#
# Runs on a CPU in seconds (as a notebook, `colabs/matrix_toolkit.ipynb`, or as a script,
# `python colabs/matrix_toolkit.py`). In Colab, first run `!pip install -q -e <repo>`
# from a clone of the repository. Each section prints a small table; the numbers are what
# the self-supervised objectives in `mssl.losses` are built from. The figure goes to
# `$MSSL_COLAB_OUT` (default `/tmp/mssl_colabs`).

# %%
import os

import jax
import jax.numpy as jnp
import numpy as np

from mssl import matrix as M


def collapsing_embeddings(rng, batch=512, dim=64, rank=64, noise=0.0):
  """Embeddings whose covariance has `rank` significant directions."""
  basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
  z = rng.normal(size=(batch, rank)) @ basis.T + noise * rng.normal(size=(batch, dim))
  return jnp.asarray(z, jnp.float32)


# %% [markdown]
# ## 1. Collapse, seen through the covariance spectrum
# As the embeddings collapse onto fewer directions, the matrix entropy of the (centred,
# normalised) covariance, the total coding rate and the effective rank all fall.

# %%
def collapse_table(rng):
  rows = []
  for rank in (64, 16, 4, 1):
    z = collapsing_embeddings(rng, rank=rank, noise=1e-3)
    cov = M.cross_covariance(z)
    rows.append({
        "rank": rank,
        "effective_rank": float(M.effective_rank(z)),
        "von_neumann": float(M.von_neumann_entropy(cov)),
        "renyi_2": float(M.renyi_entropy(cov, 2.0)),
        "tcr_mu3": float(M.total_coding_rate(z, mu=3.0)),
        "spectrum": np.asarray(M.embedding_spectrum(z)),
    })
  print(f"{'true rank':>9} {'eff. rank':>9} {'vN entropy':>10} {'Renyi-2':>8} {'TCR':>7}")
  for r in rows:
    print(f"{r['rank']:>9} {r['effective_rank']:>9.2f} {r['von_neumann']:>10.3f} "
          f"{r['renyi_2']:>8.3f} {r['tcr_mu3']:>7.3f}")
  return rows


# %% [markdown]
# ## 2. Matrix cross-entropy and KL between two views
# Matrix-SSL aligns the covariance of one branch with the other's through
# `MCE(P, Q) = tr(-P log Q + Q)`; `MKL(P || Q) = MCE(P, Q) - ME(P)` is zero only when the
# two covariances agree.

# %%
def divergence_table(rng):
  z = collapsing_embeddings(rng, dim=32, rank=32)
  print(f"{'view noise':>10} {'MCE':>9} {'ME(P)':>9} {'MKL':>9}")
  for noise in (0.0, 0.5, 2.0):
    z2 = z + noise * jnp.asarray(rng.normal(size=z.shape), jnp.float32)
    p = M.cross_covariance(z) + jnp.eye(32)
    q = M.cross_covariance(z2) + jnp.eye(32)
    print(f"{noise:>10.1f} {float(M.matrix_cross_entropy(p, q)):>9.4f} "
          f"{float(M.matrix_entropy(p)):>9.4f} {float(M.matrix_kl(p, q)):>9.5f}")


# %% [markdown]
# ## 3. Mutual information of two Gram matrices
# The Hadamard-product form of matrix mutual information is high for dependent variables
# and near zero for independent ones.

# %%
def mutual_information_table(rng):
  x = rng.normal(size=(256, 2))
  print(f"{'relation':>12} {'I_2(Kx; Ky)':>12} {'HSIC':>8}")
  kx = M.gram_matrix(jnp.asarray(x, jnp.float32), kernel="gaussian")
  for name, y in (("y = x", x), ("y = tanh(x)", np.tanh(2 * x)),
                  ("independent", rng.normal(size=(256, 2)))):
    ky = M.gram_matrix(jnp.asarray(y, jnp.float32), kernel="gaussian")
    print(f"{name:>12} {float(M.matrix_mutual_information(kx, ky)):>12.4f} "
          f"{float(M.hsic(kx, ky)):>8.4f}")


# %% [markdown]
# ## 4. The order-K Taylor logarithm against the exact one
# Matrix-SSL's official code uses a 4th-order series; its gap to the exact logarithm
# shrinks with the order when the spectrum of `Q - I` lies inside (-1, 1).

# %%
def taylor_table(rng):
  # Spread the spectrum of Q - I over (-0.6, 0.6) so the orders are told apart.
  basis = np.linalg.qr(rng.normal(size=(32, 32)))[0]
  q = jnp.asarray((basis * (1.0 + np.linspace(-0.6, 0.6, 32))) @ basis.T, jnp.float32)
  exact = float(jnp.trace(M.logm(q, method="eigh")))
  print(f"{'order':>5} {'tr TaylorLog':>13} {'exact':>9} {'gap':>9}")
  for order in (1, 2, 4, 8):
    approx = float(M.trace_taylor_logm(q, order))
    print(f"{order:>5} {approx:>13.6f} {exact:>9.6f} {abs(approx - exact):>9.2e}")


# %% [markdown]
# ## Run every section, then plot the spectra of the collapsing embeddings

# %%
OUT = os.environ.get("MSSL_COLAB_OUT", "/tmp/mssl_colabs")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)
print(f"mssl.matrix on {jax.devices()[0].platform}\n")
print("1. Collapse"); rows = collapse_table(rng); print()
print("2. Divergences"); divergence_table(rng); print()
print("3. Mutual information"); mutual_information_table(rng); print()
print("4. Taylor logarithm"); taylor_table(rng)

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.5))
for r in rows:
  ax.semilogy(np.maximum(r["spectrum"], 1e-8), label=f"rank {r['rank']}")
ax.set_xlabel("eigenvalue index"); ax.set_ylabel("eigenvalue of C(z, z)")
ax.legend(); fig.tight_layout()
fig.savefig(os.path.join(OUT, "spectrum.png"), dpi=120)
print(f"wrote {os.path.join(OUT, 'spectrum.png')}")
