# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (diffusion course)
#     language: python
#     name: dmlib-course
# ---

# %% [markdown]
# # Chapter 1: Gaussian identities
#
# The lecture's slide *Refresh: properties of Gaussian* lists the facts about Gaussians
# that the rest of the course runs on. For $x \sim \mathcal N(\mu_x, \sigma_x^2)$ and
# $y \sim \mathcal N(\mu_y, \sigma_y^2)$:
#
# | | identity | used in |
# |---|---|---|
# | C1.1 | $x + y \sim \mathcal N(\mu_x + \mu_y,\ \sigma_x^2 + \sigma_y^2)$ for **independent** $x, y$ | chapter 3: many small noise steps = one big one, $q(x_t \mid x_0)$ |
# | C1.2 | $\mathrm{KL}(p_x \,\|\, p_y) = \dfrac{\sigma_x^2 + (\mu_x - \mu_y)^2}{2\sigma_y^2} + \log\dfrac{\sigma_y}{\sigma_x} - \dfrac12$ | chapter 4: the ELBO's KL terms |
# | C1.3 | equal variances: $\mathrm{KL} = \dfrac{(\mu_x - \mu_y)^2}{2\sigma^2}$ (**the slide has an error here**) | chapter 4: KL $\to$ L2 loss |
# | C1.4 | the product of two Gaussian *densities* is an (unnormalised) Gaussian | chapter 4: the posterior $q(x_{t-1} \mid x_t, x_0)$ |
#
# For each identity we derive it, write it in code, and **check it against an independent
# computation**: Monte Carlo with a stated error bar, or numerical integration with
# `scipy.integrate.quad`. A figure and a widget put all four side by side at the end.
# Four exercises let you write the key formulas yourself: the parameters of $a x + b y$
# (1.1), the KL (1.2), its Monte Carlo estimate (1.3) and the product's mean and variance
# (1.4).
#
# Notation: $\mathcal N(\mu, \sigma^2)$ has the **variance** second (`var` in code;
# the standard deviation $\sigma$ is `std`). Mixing the two is the most common slip in this
# material, and the checks in the exercises look for it.
#
# **Objectives.** After this chapter you can
#
# * derive the distribution of $a x + b y$ for independent Gaussians, and say why
#   independence is needed;
# * derive and compute the KL divergence between two Gaussians, in 1-D and for diagonal
#   and isotropic Gaussians in $d$ dimensions, and estimate it by Monte Carlo with an error
#   bar;
# * show that the equal-variance KL is a squared distance between means, and spot the
#   slide's error in it;
# * multiply two Gaussian densities (precisions add, the mean is precision-weighted), the
#   step behind chapter 4's posterior.
#
# Sections marked **Optional depth ▸** are second checks you can skip (chapter 0 explains
# the markers).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import integrate, stats

import dmlib
from dmlib import checks
from dmlib.gaussians import (gaussian_log_prob, gaussian_product, gaussian_product_diag,
                             gaussian_sum, normal_kl, normal_kl_diag, normal_kl_isotropic,
                             normal_kl_monte_carlo)

gen = dmlib.seed_everything(0)
torch.set_default_dtype(torch.float64)  # closed forms are checked to many digits
N_MC = 200_000  # Monte Carlo sample size (error bars scale as 1/sqrt(N)); fixed, so that the
                # checked numbers below are the same in quick and full mode
print("Monte Carlo samples per check:", N_MC)


def fmt(v, digits: int) -> str:
    """Round for printing; + 0.0 turns a rounded -0.0 into 0.0 (identical text on every machine)."""
    return f"{round(float(v), digits) + 0.0:.{digits}f}"


MC_HEADER = f"{'':34s} {'closed form':>11}  {'Monte Carlo +- SE':>19}  {'|diff|/SE':>9}"


def mc_line(name: str, closed: float, est: float, se: float) -> str:
    """One row of a Monte Carlo check: the closed form, the estimate +- its standard error, and
    their distance in standard errors (below 4: they agree; far above: the formula is wrong)."""
    z = abs(float(est) - float(closed)) / float(se)
    verdict = "agrees" if z < 4 else "rejected"
    return (f"{name:34s} {fmt(closed, 4):>11}  {fmt(est, 4):>9} +- {fmt(se, 4)}  {z:9.1f}  {verdict}")

# %% [markdown]
# ## 1. Sums of independent Gaussians (C1.1)
#
# **Derivation.** The moment generating function $M_x(s) = \mathbb E[e^{s x}]$ determines a
# distribution, and a Gaussian's is $M_x(s) = \exp(\mu_x s + \tfrac12 \sigma_x^2 s^2)$.
# If $x$ and $y$ are **independent**, the expectation of a product factorises:
#
# $$M_{x+y}(s) = \mathbb E[e^{s x} e^{s y}] \overset{\text{indep.}}{=} \mathbb E[e^{s x}]\,\mathbb E[e^{s y}]
#   = \exp\!\big((\mu_x + \mu_y) s + \tfrac12 (\sigma_x^2 + \sigma_y^2) s^2\big),$$
#
# which is the MGF of $\mathcal N(\mu_x + \mu_y, \sigma_x^2 + \sigma_y^2)$. **Variances
# add, not standard deviations**: $\sigma_{x+y} = \sqrt{\sigma_x^2 + \sigma_y^2}$, which is
# smaller than $\sigma_x + \sigma_y$.
#
# In code this is two additions (`dmlib.gaussians.gaussian_sum`). The check draws samples
# of $x$ and $y$ independently and compares the sample mean and variance with the closed
# form, within 4 standard errors ($\sqrt{\sigma^2/N}$ for the mean, $\sigma^2\sqrt{2/(N-1)}$
# for the variance of a Gaussian sample).

# %%
mu_x, var_x, mu_y, var_y = 1.0, 0.5, -3.0, 2.0
mean_s, var_s = (float(v) for v in gaussian_sum(mu_x, var_x, mu_y, var_y))  # (mu_x + mu_y, var_x + var_y)

x = mu_x + math.sqrt(var_x) * torch.randn(N_MC, generator=gen)
y = mu_y + math.sqrt(var_y) * torch.randn(N_MC, generator=gen)  # independent draws
s = x + y
se_mean = math.sqrt(var_s / N_MC)
se_var = var_s * math.sqrt(2 / (N_MC - 1))
print(f"closed form:  mean {mean_s:.4f}, var {var_s:.4f}")
print(f"Monte Carlo:  mean {s.mean():.4f} +- {se_mean:.4f}, var {s.var():.4f} +- {se_var:.4f}")

# %%
# NBVAL_CHECK_OUTPUT
print(f"x ~ N({mu_x}, {var_x}), y ~ N({mu_y}, {var_y})  ->  x + y ~ N({mean_s:.2f}, {var_s:.2f})")
print(MC_HEADER)
print(mc_line("mean of x + y", mean_s, s.mean(), se_mean))
print(mc_line("variance: var_x + var_y", var_s, s.var(), se_var))
print(mc_line("variance if stds added (wrong)", (math.sqrt(var_x) + math.sqrt(var_y)) ** 2, s.var(), se_var))

# %% [markdown]
# Matching two moments is not yet "is Gaussian". An independent check of the whole density:
# the density of a sum of independent variables is the **convolution**
# $p_{x+y}(z) = \int p_x(u)\, p_y(z - u)\, du$, which `scipy.integrate.quad` computes
# numerically, point by point.

# %%
# NBVAL_CHECK_OUTPUT
zs = np.linspace(-7, 3, 21)
conv = [integrate.quad(lambda u: stats.norm.pdf(u, mu_x, math.sqrt(var_x))
                       * stats.norm.pdf(z - u, mu_y, math.sqrt(var_y)), -30, 30,
                       points=[mu_x, z - mu_y], limit=200)[0] for z in zs]
closed = gaussian_log_prob(torch.from_numpy(zs), mean_s, var_s).exp().numpy()
err = np.abs(np.array(conv) - closed).max()
print("     z   convolution (quad)   N(z; -2, 2.5)")
for i in (0, 5, 10, 15, 20):
    print(f"{zs[i]:6.1f}   {fmt(conv[i], 8):>18}   {fmt(closed[i], 8):>13}")
print(f"largest difference over all 21 points below 1e-10: {'yes' if err < 1e-10 else 'NO'}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(s[:200_000].numpy(), bins=120, density=True, alpha=0.4, label="samples of x + y")
grid = np.linspace(-9, 5, 400)
for m, v, name in [(mu_x, var_x, "p(x)"), (mu_y, var_y, "p(y)"), (mean_s, var_s, "N(mu_x+mu_y, var_x+var_y)")]:
    ax.plot(grid, stats.norm.pdf(grid, m, math.sqrt(v)), label=name)
ax.plot(zs, conv, "k.", label="convolution (quad)")
ax.set(title="C1.1: the sum of independent Gaussians", xlabel="value", ylabel="density")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Optional depth ▸ Why independence matters
#
# *Skip it and you miss two counterexamples; the rest of the course only uses the fact that
# diffusion's noise is drawn independently at every step.*
#
# The proof used independence once, to factorise $\mathbb E[e^{sx}e^{sy}]$. Without it two
# things can go wrong.
#
# **(a) Correlated Gaussians: the variance is wrong.** For any two random variables
# $\mathrm{Var}(x + y) = \sigma_x^2 + \sigma_y^2 + 2\,\mathrm{Cov}(x, y)$. The extreme case
# $y = -x$ has $\mathrm{Var}(x+y) = 0$, not $2\sigma_x^2$: the sum is the constant $0$.
# (For *jointly* Gaussian $x, y$ the sum is still Gaussian, with that variance;
# `gaussian_sum(..., cov=...)` gives it.)

# %%
# NBVAL_CHECK_OUTPUT
rho = -0.8  # correlation of x and y
cov = rho * math.sqrt(var_x * var_y)
z1, z2 = torch.randn(2, N_MC, generator=gen)
xc = mu_x + math.sqrt(var_x) * z1
yc = mu_y + math.sqrt(var_y) * (rho * z1 + math.sqrt(1 - rho ** 2) * z2)  # Corr(xc, yc) = rho
sc = xc + yc
_, var_indep = gaussian_sum(mu_x, var_x, mu_y, var_y)
_, var_corr = gaussian_sum(mu_x, var_x, mu_y, var_y, cov=cov)
se = float(var_corr) * math.sqrt(2 / (N_MC - 1))
print(f"correlation {rho}: Var(x + y) of correlated x, y")
print(MC_HEADER)
print(mc_line("var_x + var_y + 2 Cov", var_corr, sc.var(), se))
print(mc_line("var_x + var_y (ignores Cov)", var_indep, sc.var(), se))
print("y = -x: variance of x + y is", float((x + (-x)).var()), "but var_x + var_y =", 2 * var_x)

# %% [markdown]
# **(b) Gaussian and uncorrelated is still not enough.** Let $x \sim \mathcal N(0, 1)$ and
# $y = \xi x$ with a fair random sign $\xi = \pm 1$ independent of $x$. Then
# $y \sim \mathcal N(0, 1)$ too (the standard normal is symmetric), and
# $\mathrm{Cov}(x, y) = \mathbb E[\xi]\,\mathbb E[x^2] = 0$, so the variance formula still
# gives $\mathrm{Var}(x+y) = 2$. But $x + y = (1 + \xi) x$ is exactly $0$ half of the time:
# it has a point mass at $0$ and is **not** Gaussian. The identity needs $x, y$ independent
# (or at least jointly Gaussian). In diffusion the fresh noise $\epsilon_t$ of every step is
# drawn independently of everything before it, which is what makes chapter 3's closed form
# $q(x_t \mid x_0)$ exact.

# %%
# NBVAL_CHECK_OUTPUT
xi = torch.randint(0, 2, (N_MC,), generator=gen) * 2.0 - 1.0
xb = torch.randn(N_MC, generator=gen)
yb = xi * xb
sb = xb + yb
frac_zero = float((sb == 0).float().mean())
se_of_mean = lambda v: float(v.std()) / math.sqrt(v.numel())  # noqa: E731
print(MC_HEADER)
print(mc_line("mean of y = xi x (N(0, 1): 0)", 0.0, yb.mean(), 1 / math.sqrt(N_MC)))
print(mc_line("variance of y (N(0, 1): 1)", 1.0, yb.var(), math.sqrt(2 / N_MC)))
# x y = xi x^2 and x + y are not Gaussian: their standard errors come from the samples
# (Var(x y) = E[x^4] = 3; Var((x + y)^2) = 20, not the Gaussian 2 * 2^2 = 8)
print(mc_line("Corr(x, y)", 0.0, (xb * yb).mean(), se_of_mean(xb * yb)))
print(mc_line("Var(x + y)", 2.0, sb.var(), se_of_mean((sb - sb.mean()) ** 2)))
print(mc_line("P(x + y == 0): a Gaussian gives 0", 0.0, frac_zero, 0.5 / math.sqrt(N_MC)))
print(mc_line("P(x + y == 0): P(xi = -1) = 1/2", 0.5, frac_zero, 0.5 / math.sqrt(N_MC)))

# %% [markdown]
# **Exercise 1.1 (★ warm-up).** Scaling is the other half of the story: $M_{ax}(s) = M_x(as)$ gives
# $a x \sim \mathcal N(a\mu_x, a^2\sigma_x^2)$. Write `sum_params(mu_x, var_x, mu_y, var_y, a, b)`
# returning the tuple `(mean, var)` of $a x + b y$ for independent
# $x \sim \mathcal N(\mu_x, \sigma_x^2)$, $y \sim \mathcal N(\mu_y, \sigma_y^2)$ (all
# arguments are tensors that broadcast; `var` is a variance).

# %%
def sum_params(mu_x: torch.Tensor, var_x: torch.Tensor, mu_y: torch.Tensor, var_y: torch.Tensor,
               a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    return a * mu_x + b * mu_y, a ** 2 * var_x + b ** 2 * var_y
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_sum_params(sum_params)

# %% [markdown]
# **Two noising steps are one (a preview of chapter 3).** A diffusion step is
# $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon_t$ with fresh, independent
# $\epsilon_t \sim \mathcal N(0, 1)$. Two steps from a fixed $x_0$ give
# $x_2 = \sqrt{(1-\beta_1)(1-\beta_2)}\,x_0 + \sqrt{1-\beta_2}\sqrt{\beta_1}\,\epsilon_1 + \sqrt{\beta_2}\,\epsilon_2$:
# the two noise terms are independent Gaussians, so by C1.1 they are **one** Gaussian of
# variance $(1-\beta_2)\beta_1 + \beta_2 = 1 - (1-\beta_1)(1-\beta_2) = 1 - \bar\alpha_2$.
# dmlib's `gaussian_sum` (the reference from here on) and a simulation agree:

# %%
# NBVAL_CHECK_OUTPUT
beta1, beta2, x0_val = 0.1, 0.2, 1.5
_, var_noise = gaussian_sum(0.0, (1 - beta2) * beta1, 0.0, beta2)
alpha_bar_2 = (1 - beta1) * (1 - beta2)
e1, e2 = torch.randn(2, N_MC, generator=gen)
x1 = math.sqrt(1 - beta1) * x0_val + math.sqrt(beta1) * e1
x2 = math.sqrt(1 - beta2) * x1 + math.sqrt(beta2) * e2  # two steps, simulated
print(f"noise variance after two steps: {float(var_noise):.4f} = 1 - alpha_bar_2 = {1 - alpha_bar_2:.4f}")
print(MC_HEADER)
print(mc_line("mean: sqrt(alpha_bar_2) x0", math.sqrt(alpha_bar_2) * x0_val, x2.mean(),
              math.sqrt(1 - alpha_bar_2) / math.sqrt(N_MC)))
print(mc_line("variance: 1 - alpha_bar_2", 1 - alpha_bar_2, x2.var(),
              (1 - alpha_bar_2) * math.sqrt(2 / (N_MC - 1))))

# %% [markdown]
# ## 2. KL divergence between Gaussians (C1.2)
#
# **Derivation.** $\mathrm{KL}(p \,\|\, q) = \mathbb E_{x \sim p}[\log p(x) - \log q(x)]$ with
# $p = \mathcal N(\mu_1, \sigma_1^2)$, $q = \mathcal N(\mu_2, \sigma_2^2)$ and
# $\log \mathcal N(x; \mu, \sigma^2) = -\tfrac12 \log(2\pi\sigma^2) - \frac{(x-\mu)^2}{2\sigma^2}$:
#
# $$\mathrm{KL} = \tfrac12 \log\frac{\sigma_2^2}{\sigma_1^2}
#   - \frac{\mathbb E_p[(x-\mu_1)^2]}{2\sigma_1^2} + \frac{\mathbb E_p[(x-\mu_2)^2]}{2\sigma_2^2}.$$
#
# Under $p$, $\mathbb E_p[(x-\mu_1)^2] = \sigma_1^2$ and
# $\mathbb E_p[(x-\mu_2)^2] = \mathbb E_p[(x - \mu_1 + \mu_1 - \mu_2)^2] = \sigma_1^2 + (\mu_1-\mu_2)^2$
# (the cross term has mean zero). So
#
# $$\boxed{\mathrm{KL}\big(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2)\big)
#   = \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2} + \log\frac{\sigma_2}{\sigma_1} - \frac12}$$
#
# which is the slide's formula (with $x \to 1$, $y \to 2$). Note $\log(\sigma_2/\sigma_1)
# = \tfrac12\log(\sigma_2^2/\sigma_1^2)$: a log of standard deviations, or half a log of
# variances. First the formula as the slide writes it, then dmlib's version
# (`normal_kl`, written with variances), and a check that they agree:

# %%
def kl_slide(mu1, std1, mu2, std2):
    """The slide's form, with standard deviations."""
    return (std1 ** 2 + (mu1 - mu2) ** 2) / (2 * std2 ** 2) + torch.log(std2 / std1) - 0.5


g = torch.Generator().manual_seed(1)
m1, m2 = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
v1, v2 = torch.rand(1000, generator=g) * 3 + 0.1, torch.rand(1000, generator=g) * 3 + 0.1

# %%
# NBVAL_CHECK_OUTPUT
diff = (kl_slide(m1, v1.sqrt(), m2, v2.sqrt()) - normal_kl(m1, v1, m2, v2)).abs().max()
print(f"first pair: slide's form {fmt(kl_slide(m1[:1], v1[:1].sqrt(), m2[:1], v2[:1].sqrt()), 6)}, "
      f"normal_kl {fmt(normal_kl(m1[:1], v1[:1], m2[:1], v2[:1]), 6)}")
print(f"all 1000 random pairs agree to 12 decimals: {'yes' if float(diff) < 1e-12 else 'NO'}")

# %% [markdown]
# **Independent checks.** (i) `scipy.integrate.quad` integrates $p(x)\log\frac{p(x)}{q(x)}$
# numerically; (ii) Monte Carlo averages $\log p(x) - \log q(x)$ over samples from $p$, with
# the standard error $\mathrm{std}/\sqrt N$ of that average as error bar
# (`normal_kl_monte_carlo` returns both).

# %%
def kl_quad(mu1, var1, mu2, var2):
    p, q = stats.norm(mu1, math.sqrt(var1)), stats.norm(mu2, math.sqrt(var2))
    lo, hi = mu1 - 40 * math.sqrt(var1), mu1 + 40 * math.sqrt(var1)
    return integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), lo, hi,
                          points=[mu1], limit=200)[0]


pairs = [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 1.0, 1.0), (0.3, 0.5, -1.2, 2.0),
         (2.0, 0.01, 1.9, 0.04), (-1.0, 3.0, 0.5, 0.7)]
eps = torch.randn(N_MC, generator=gen)

# %%
# NBVAL_CHECK_OUTPUT
print("   p = N(mu1, var1)   q = N(mu2, var2)   closed form      quad    Monte Carlo +- SE   |diff|/SE")
for mu1, var1, mu2, var2 in pairs:
    closed = float(normal_kl(mu1, var1, mu2, var2))
    quad = kl_quad(mu1, var1, mu2, var2)
    est, se = normal_kl_monte_carlo(mu1, var1, mu2, var2, eps)
    z = abs(float(est) - closed) / float(se) if float(se) > 0 else 0.0  # se = 0 when p == q
    print(f"   N({mu1:4.1f}, {var1:4.2f})      N({mu2:4.1f}, {var2:4.2f})    {closed:10.6f}  "
          f"{fmt(quad, 6):>10}   {fmt(est, 4):>8} +- {fmt(se, 4)}   {z:8.1f}")

# %% [markdown]
# **KL is not symmetric.**
#
# > **Think first.** Which is larger, $\mathrm{KL}(\mathcal N(0, 1)\,\|\,\mathcal N(1, 4))$
# > or $\mathrm{KL}(\mathcal N(1, 4)\,\|\,\mathcal N(0, 1))$? Decide from the definition
# > $\mathbb E_{x\sim p}[\log p(x) - \log q(x)]$ before computing anything.
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# The second. KL$(p\,\|\,q)$ averages the log-ratio over samples from $p$. When $p$ is
# the wide $\mathcal N(1, 4)$ and $q$ the narrow $\mathcal N(0, 1)$, many samples of $p$ land
# in the tails of $q$, where $\log q$ is very negative and the log-ratio large. The other way
# round, samples of the narrow $p$ all sit where the wide $q$ is reasonably large. The formula
# gives $0.443$ and $1.307$ nats.
#
# </details>
#
# $\mathrm{KL}(p\,\|\,q)$ averages under $p$; swapping the
# arguments changes the value. In the ELBO (chapter 4) the order is fixed by the derivation:
# $\mathrm{KL}(q(x_{t-1}\mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))$.

# %%
# NBVAL_CHECK_OUTPUT
print(f"KL(N(0, 1) || N(1, 4)) = {float(normal_kl(0.0, 1.0, 1.0, 4.0)):.4f}")
print(f"KL(N(1, 4) || N(0, 1)) = {float(normal_kl(1.0, 4.0, 0.0, 1.0)):.4f}")

# %% [markdown]
# **Exercise 1.2 (★★ core).** Write `kl_gaussian(mu1, var1, mu2, var2)`, the KL divergence
# $\mathrm{KL}(\mathcal N(\mu_1, \sigma_1^2) \,\|\, \mathcal N(\mu_2, \sigma_2^2))$, elementwise
# for tensors (they may have different shapes that broadcast). The arguments are
# **variances**.

# %%
def kl_gaussian(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor,
                var2: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_kl_gaussian(kl_gaussian)

# %% [markdown]
# The check recognises the usual slips. Two of them, and what it says:

# %%
# NBVAL_CHECK_OUTPUT
wrong_versions = {
    "arguments swapped": lambda m1, v1, m2, v2: normal_kl(m2, v2, m1, v1),
    "log of variances, no 1/2": lambda m1, v1, m2, v2: (v1 + (m1 - m2) ** 2) / (2 * v2)
    + torch.log(v2 / v1) - 0.5,
}
for name, fn in wrong_versions.items():
    print(f"[{name}]", end=" ")
    checks.check_kl_gaussian(fn)

# %% [markdown]
# **Exercise 1.3 (Monte Carlo; ★★ core).** Write `kl_monte_carlo(mu1, var1, mu2, var2, eps)`: the
# Monte Carlo estimate of the same KL from given standard-normal draws `eps` of shape
# `(n,)` (the parameters are 0-d tensors). Turn `eps` into samples $x_k$ of
# $p = \mathcal N(\mu_1, \sigma_1^2)$ (reparameterisation: $x = \mu + \sigma\epsilon$), then
# return the average of $\log p(x_k) - \log q(x_k)$ as a 0-d tensor. Passing the noise in
# makes the estimate deterministic, so it can be checked exactly.

# %%
def kl_monte_carlo(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor,
                   var2: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    x = mu1 + var1.sqrt() * eps
    log_p = -0.5 * (math.log(2 * math.pi) + torch.log(var1) + (x - mu1) ** 2 / var1)
    log_q = -0.5 * (math.log(2 * math.pi) + torch.log(var2) + (x - mu2) ** 2 / var2)
    return (log_p - log_q).mean()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_kl_monte_carlo(kl_monte_carlo)

# %% [markdown]
# The chapter continues with dmlib's `normal_kl_monte_carlo`, which also returns the error
# bar. The estimate is unbiased and its standard error shrinks like $1/\sqrt n$ (below:
# estimates from growing prefixes of one stream of draws, so neighbouring points are
# correlated):

# %%
ns = np.unique(np.logspace(1, math.log10(N_MC), 25).astype(int))
p_q = (0.3, 0.5, -1.2, 2.0)
est_se = [normal_kl_monte_carlo(*p_q, eps[:n]) for n in ns]
est = np.array([float(e) for e, _ in est_se])
se = np.array([float(s) for _, s in est_se])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.fill_between(ns, est - 2 * se, est + 2 * se, alpha=0.3, label="estimate +- 2 standard errors")
ax.plot(ns, est, ".-", label="Monte Carlo estimate")
ax.axhline(float(normal_kl(*p_q)), color="k", ls="--", label="closed form")
ax.set(xscale="log", title="C1.2: Monte Carlo KL(N(0.3, 0.5) || N(-1.2, 2)) vs sample size",
       xlabel="number of samples n", ylabel="KL (nats)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### In $d$ dimensions: diagonal and isotropic Gaussians
#
# *The two formulas below are core (chapter 4 uses the isotropic one); the check against
# the full-covariance formula after them is optional depth.*
#
# A Gaussian with diagonal covariance $\mathrm{diag}(\sigma_1^2, \dots, \sigma_d^2)$ is $d$
# independent 1-D Gaussians, and the KL of product distributions is the sum of the
# coordinates' KLs (the log of a product is a sum):
#
# $$\mathrm{KL}\big(\mathcal N(\mu_1, \mathrm{diag}\,\sigma_1^2) \,\|\, \mathcal N(\mu_2, \mathrm{diag}\,\sigma_2^2)\big)
#   = \sum_{i=1}^d \Big[\frac{\sigma_{1,i}^2 + (\mu_{1,i}-\mu_{2,i})^2}{2\sigma_{2,i}^2}
#   + \log\frac{\sigma_{2,i}}{\sigma_{1,i}} - \frac12\Big].$$
#
# The isotropic case $\Sigma = \sigma^2 I$ (what diffusion uses) simplifies to
#
# $$\mathrm{KL}\big(\mathcal N(\mu_1, \sigma_1^2 I) \,\|\, \mathcal N(\mu_2, \sigma_2^2 I)\big)
#   = \frac{d\,\sigma_1^2 + \|\mu_1-\mu_2\|^2}{2\sigma_2^2} + \frac d2\log\frac{\sigma_2^2}{\sigma_1^2} - \frac d2 .$$
#
# dmlib: `normal_kl_diag` and `normal_kl_isotropic` (coordinates in the last dimension).
#
# #### Optional depth ▸ checking them against the general formula
#
# *Skip it and you miss a second, independent check of the two formulas above.*
#
# The independent reference is the general formula for full covariances,
# $\tfrac12\big[\mathrm{tr}(\Sigma_2^{-1}\Sigma_1) + (\mu_2-\mu_1)^\top\Sigma_2^{-1}(\mu_2-\mu_1) - d
# + \log\frac{\det\Sigma_2}{\det\Sigma_1}\big]$, computed with `numpy.linalg`, and Monte Carlo
# with scipy's multivariate log-densities.

# %%
def kl_full_cov(m1, S1, m2, S2):
    """KL between multivariate Gaussians with full covariances (numpy, independent of dmlib)."""
    S2inv = np.linalg.inv(S2)
    dm = m2 - m1
    return 0.5 * (np.trace(S2inv @ S1) + dm @ S2inv @ dm - len(m1)
                  + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1])


d = 10
g = torch.Generator().manual_seed(2)
mu_a, mu_b = torch.randn(d, generator=g), torch.randn(d, generator=g)
var_a, var_b = torch.rand(d, generator=g) + 0.2, torch.rand(d, generator=g) + 0.2
kl_diag = float(normal_kl_diag(mu_a, var_a, mu_b, var_b))
kl_iso = float(normal_kl_isotropic(mu_a, 0.5, mu_b, 1.5))
rng = np.random.default_rng(0)
xs = mu_a.numpy() + np.sqrt(var_a.numpy()) * rng.standard_normal((N_MC, d))
lr = (stats.multivariate_normal(mu_a.numpy(), np.diag(var_a.numpy())).logpdf(xs)
      - stats.multivariate_normal(mu_b.numpy(), np.diag(var_b.numpy())).logpdf(xs))

# %%
# NBVAL_CHECK_OUTPUT
ref_diag = kl_full_cov(mu_a.numpy(), np.diag(var_a.numpy()), mu_b.numpy(), np.diag(var_b.numpy()))
ref_iso = kl_full_cov(mu_a.numpy(), 0.5 * np.eye(d), mu_b.numpy(), 1.5 * np.eye(d))
print(f"d = {d}, diagonal:  normal_kl_diag = {kl_diag:.6f}, full-covariance formula = {ref_diag:.6f}")
print(f"d = {d}, isotropic: normal_kl_isotropic = {kl_iso:.6f}, full-covariance formula = {ref_iso:.6f}")
print(MC_HEADER)
print(mc_line(f"d = {d}, diagonal KL", kl_diag, lr.mean(), lr.std() / math.sqrt(len(lr))))

# %% [markdown]
# ## 3. Equal variances, and an erratum (C1.3)
#
# With $\sigma_1 = \sigma_2 = \sigma$ the log term vanishes and
# $\frac{\sigma^2}{2\sigma^2} = \frac12$ cancels the $-\frac12$:
#
# $$\mathrm{KL}\big(\mathcal N(\mu_x, \sigma^2) \,\|\, \mathcal N(\mu_y, \sigma^2)\big)
#   = \frac{(\mu_x - \mu_y)^2}{2\sigma^2}
#   \qquad\text{(in } d \text{ dimensions: } \tfrac{\|\mu_x-\mu_y\|^2}{2\sigma^2}\text{)}.$$
#
# This is the slide's "L2 distance between means": with fixed variances, the KL terms of
# the ELBO become squared distances between means, weighted by $1/(2\sigma^2)$ (chapter 4).
#
# > **Erratum (slide "Refresh: properties of Gaussian").** The slide writes, for
# > $\sigma_x = \sigma_y$,
# > $$\mathrm{KL} = \frac{(\mu_x - \mu_y)^2}{2} - \frac12 \qquad\text{(wrong)}$$
# > The correct value is
# > $$\mathrm{KL} = \frac{(\mu_x - \mu_y)^2}{2\sigma^2} \qquad\text{(correct)}.$$
# > The slide keeps the $-\frac12$ that the variance term cancels, and drops the division by
# > $\sigma^2$. Two numbers tell them apart: at $\mu_x = \mu_y$ the slide gives
# > $-\frac12$, but a KL divergence is never negative (Gibbs' inequality) and is $0$ exactly
# > for equal distributions; and for $\sigma \ne 1$ the two differ by more than the
# > constant, e.g. $\mu_x - \mu_y = 1$, $\sigma = 0.5$: slide $0$, correct $2$.

# %%
# NBVAL_CHECK_OUTPUT
print(" mu_x - mu_y  sigma    slide (wrong)  correct   quad    |slide - quad|  |correct - quad|")
for dmu, sigma in [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5), (2.0, 2.0), (0.5, 0.1)]:
    slide = dmu ** 2 / 2 - 0.5
    correct = dmu ** 2 / (2 * sigma ** 2)
    quad = kl_quad(dmu, sigma ** 2, 0.0, sigma ** 2)
    print(f"    {dmu:4.1f}      {sigma:4.1f}      {slide:8.4f}    {correct:8.4f} {fmt(quad, 4):>8}    "
          f"{fmt(abs(slide - quad), 4):>12}  {fmt(abs(correct - quad), 4):>14}")

# %% [markdown]
# ## 4. The product of two Gaussian densities (C1.4)
#
# The slide: "Product of two Gaussians PDFs is a Gaussian. Why? Gaussian $\Leftrightarrow$
# $\log p(x)$ has quadratic form!" A density whose log is a concave quadratic in $x$ is a
# Gaussian, and a sum of two quadratics is a quadratic. Let us make it exact.
#
# > **Think first.** Multiply the densities of $\mathcal N(0, 1)$ and $\mathcal N(2, 1)$
# > pointwise and normalise the result. Where is its mean, and is it wider or narrower than
# > either factor? Compare with the *sum* $x + y$ of two independent draws.
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# The mean is $1$, halfway (the factors are equally sharp), and the variance is $1/2$:
# narrower than either factor, because a point must be likely under *both* densities. Its
# log is $-\tfrac12 x^2 - \tfrac12 (x-2)^2 + \text{const} = -(x-1)^2 + \text{const}$, which is
# $\mathcal N(1, \tfrac12)$. The sum of two independent draws is $\mathcal N(2, 2)$: wider.
# Products of densities combine evidence; sums of variables add uncertainty.
#
# </details>
#
# **Derivation.** Write precisions $\lambda_i = 1/\sigma_i^2$. Up to terms without $x$,
#
# $$\log\big[\mathcal N(x;\mu_1,\sigma_1^2)\,\mathcal N(x;\mu_2,\sigma_2^2)\big]
#   = -\tfrac12\big[\lambda_1 (x-\mu_1)^2 + \lambda_2 (x-\mu_2)^2\big] + \text{const}
#   = -\tfrac12 (\lambda_1 + \lambda_2)\,x^2 + (\lambda_1\mu_1 + \lambda_2\mu_2)\,x + \text{const}.$$
#
# Completing the square gives $-\frac{(x-\mu)^2}{2\sigma^2} + \text{const}$ with
#
# $$\frac1{\sigma^2} = \frac1{\sigma_1^2} + \frac1{\sigma_2^2} \quad\text{(precisions add)},\qquad
#   \mu = \sigma^2\Big(\frac{\mu_1}{\sigma_1^2} + \frac{\mu_2}{\sigma_2^2}\Big)
#   \quad\text{(precision-weighted mean)}.$$
#
# The product is therefore $Z\,\mathcal N(x; \mu, \sigma^2)$, and the constant is its integral,
# $Z = \int \mathcal N(x;\mu_1,\sigma_1^2)\,\mathcal N(\mu_2; x,\sigma_2^2)\,dx$. Read
# probabilistically (using C1.1!) that is the density at $\mu_2$ of $x + n$ with
# $x \sim \mathcal N(\mu_1, \sigma_1^2)$ and independent noise $n \sim \mathcal N(0, \sigma_2^2)$:
#
# $$Z = \mathcal N(\mu_1;\ \mu_2,\ \sigma_1^2 + \sigma_2^2),$$
#
# itself a Gaussian density in $\mu_1 - \mu_2$. The product is sharper than either factor
# ($\sigma^2 < \min(\sigma_1^2, \sigma_2^2)$) and its mean lies between $\mu_1$ and $\mu_2$,
# closer to the sharper factor. Compare the **sum** of random variables (C1.1), where the
# *variances* add and the result is wider.
#
# First inline, as the lesson; then dmlib's `gaussian_product`, which returns
# `(mean, var, log_scale)` with `log_scale` $= \log Z$:

# %%
def product_inline(mu1, var1, mu2, var2):
    prec = 1 / var1 + 1 / var2                  # precisions add
    var = 1 / prec
    mean = var * (mu1 / var1 + mu2 / var2)       # precision-weighted mean
    log_z = gaussian_log_prob(mu1, mu2, var1 + var2)  # Z = N(mu1; mu2, var1 + var2)
    return mean, var, log_z


# %%
# NBVAL_CHECK_OUTPUT
ours = torch.stack(product_inline(m1, v1, m2, v2))
ref = torch.stack(gaussian_product(m1, v1, m2, v2))
print("first pair (mean, var, log Z): inline", ", ".join(fmt(v, 6) for v in ours[:, 0]),
      "| dmlib", ", ".join(fmt(v, 6) for v in ref[:, 0]))
print(f"all 1000 random pairs agree to 12 decimals: {'yes' if float((ours - ref).abs().max()) < 1e-12 else 'NO'}")

# %% [markdown]
# **Independent checks** with `scipy.integrate.quad` on the product $f(x) = p_1(x)p_2(x)$:
# its integral is $Z$, and its normalised first two moments are $\mu$ and $\sigma^2$; and
# $f(x) = Z\,\mathcal N(x;\mu,\sigma^2)$ pointwise on a grid (each quantity by quad, then the
# closed form, marked "(closed)"). Finally, "log p is quadratic":
# the second finite difference of $\log f$ on a grid is the constant $-1/\sigma^2$.

# %%
# NBVAL_CHECK_OUTPUT
row = "{:14} {:14} {:>10} {:>10}  {:>6} {:>6}  {:>6} {:>6}  {:>9}  {:>15}"
print(row.format("p1", "p2", "Z quad", "Z closed", "mean", "(closed)", "var", "(closed)",
                 "pointwise", "2nd diff of log f"))
for mu1, var1, mu2, var2 in [(0.0, 1.0, 0.0, 1.0), (1.0, 0.25, -2.0, 4.0), (3.0, 0.01, -1.0, 0.5)]:
    f = lambda x: (stats.norm.pdf(x, mu1, math.sqrt(var1))  # noqa: E731
                   * stats.norm.pdf(x, mu2, math.sqrt(var2)))
    quad = lambda h: integrate.quad(h, -50, 50, points=[mu1, mu2], limit=400, epsabs=1e-14)[0]  # noqa: E731
    Z, M1, M2 = quad(f), quad(lambda x: x * f(x)), quad(lambda x: x * x * f(x))
    mean, var, log_z = (float(v) for v in gaussian_product(mu1, var1, mu2, var2))
    xg = np.linspace(mean - 3 * math.sqrt(var), mean + 3 * math.sqrt(var), 61)
    pointwise = np.allclose(f(xg), math.exp(log_z) * stats.norm.pdf(xg, mean, math.sqrt(var)), rtol=1e-9)
    h = xg[1] - xg[0]
    second = np.diff(np.log(f(xg)), 2) / h ** 2   # constant -1/var if log f is quadratic
    print(row.format(f"N({mu1}, {var1})", f"N({mu2}, {var2})", f"{Z:.4e}", f"{math.exp(log_z):.4e}",
                     fmt(M1 / Z, 3), fmt(mean, 3), fmt(M2 / Z - (M1 / Z) ** 2, 4), fmt(var, 4),
                     "yes" if pointwise else "NO", f"{fmt(second.mean(), 2)} = -1/var"))

# %% [markdown]
# **Exercise 1.4 (★★ core).** Write `product_mean_var(mu1, var1, mu2, var2)` returning the tuple
# `(mean, var)` of the normalised product
# $\mathcal N(x;\mu_1,\sigma_1^2)\,\mathcal N(x;\mu_2,\sigma_2^2)/Z$, elementwise for tensors.

# %%
def product_mean_var(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor,
                     var2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    var = 1 / (1 / var1 + 1 / var2)
    return var * (mu1 / var1 + mu2 / var2), var
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_product_mean_var(product_mean_var)

# %% [markdown]
# ### In $d$ dimensions, and why chapter 4 needs it
#
# For diagonal Gaussians the product factorises over coordinates: each coordinate gets its
# own precision-weighted mean and summed precision, and $\log Z$ is the sum of the
# coordinates' $\log Z_i$ (`gaussian_product_diag`). Check in $d = 2$ by integrating the
# product on a grid (trapezoid rule):

# %%
# NBVAL_CHECK_OUTPUT
a_mean, a_var = torch.tensor([0.5, -1.0]), torch.tensor([0.8, 0.3])
b_mean, b_var = torch.tensor([1.0, 0.5]), torch.tensor([2.0, 0.6])
mean2d, var2d, log_z2d = gaussian_product_diag(a_mean, a_var, b_mean, b_var)
u = np.linspace(-6, 6, 1201)
U, V = np.meshgrid(u, u, indexing="ij")
pts = np.stack([U, V], -1)
f2d = (stats.multivariate_normal(a_mean.numpy(), np.diag(a_var.numpy())).pdf(pts)
       * stats.multivariate_normal(b_mean.numpy(), np.diag(b_var.numpy())).pdf(pts))
Z2d = np.trapezoid(np.trapezoid(f2d, u, axis=1), u)
mean_grid = [np.trapezoid(np.trapezoid(f2d * c, u, axis=1), u) / Z2d for c in (U, V)]
print(f"Z:    grid {fmt(Z2d, 6)}, closed form {fmt(math.exp(float(log_z2d)), 6)}")
print(f"mean: grid ({fmt(mean_grid[0], 5)}, {fmt(mean_grid[1], 5)}), "
      f"closed form ({fmt(mean2d[0], 5)}, {fmt(mean2d[1], 5)})")

# %% [markdown]
# **Why this matters: the posterior $q(x_{t-1} \mid x_t, x_0)$ (chapter 4).** This preview uses
# chapter 0's notation: $\beta_t$ is the variance of the noise added at step $t$,
# $\alpha_t = 1 - \beta_t$, and $\bar\alpha_t = \alpha_1\alpha_2\cdots\alpha_t$ is the share
# of the signal's variance left after $t$ steps, so that $x_t$ given $x_0$ is
# $\mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ 1 - \bar\alpha_t)$ (the two-step example of
# section 1 is the case $t = 2$; chapter 3 proves it for every $t$). By Bayes' rule,
# $q(x_{t-1} \mid x_t, x_0) \propto q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)$, a product of two
# Gaussian densities *in* $x_{t-1}$:
#
# * $q(x_{t-1} \mid x_0) = \mathcal N(x_{t-1};\ \sqrt{\bar\alpha_{t-1}}\,x_0,\ 1-\bar\alpha_{t-1})$;
# * $q(x_t \mid x_{t-1}) = \mathcal N(x_t;\ \sqrt{\alpha_t}\,x_{t-1},\ \beta_t)$, which as a
#   function of $x_{t-1}$ is $\frac1{\sqrt{\alpha_t}}\,\mathcal N(x_{t-1};\ x_t/\sqrt{\alpha_t},\ \beta_t/\alpha_t)$
#   (divide the exponent's numerator and denominator by $\alpha_t$).
#
# So the posterior is Gaussian, with the precision-weighted mean and summed precisions of
# these two. `gaussian_product` reproduces dmlib's posterior (chapter 4 derives it in full):

# %%
# NBVAL_CHECK_OUTPUT
from dmlib.posterior import posterior_mean_var
from dmlib.schedules import Schedule

sched = Schedule.linear(1000)
g = torch.Generator().manual_seed(3)
x0_, xt_ = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
for t in [2, 10, 500, 1000]:
    a, ab_prev, b = sched.alphas[t], sched.alpha_bar[t - 1], sched.betas[t]
    mean_p, var_p, _ = gaussian_product(ab_prev.sqrt() * x0_, 1 - ab_prev, xt_ / a.sqrt(), b / a)
    mean_ref, var_ref, _ = posterior_mean_var(sched, x0_, xt_, t)
    same = torch.allclose(mean_p, mean_ref.double(), atol=1e-6) and torch.allclose(var_p, var_ref.double(), rtol=1e-6)
    print(f"t = {t:4d}: variance {float(var_p.flatten()[0]):.6e} (product) vs {float(var_ref.flatten()[0]):.6e} (dmlib); "
          f"first mean {fmt(mean_p.flatten()[0], 6)} vs {fmt(mean_ref.flatten()[0], 6)}; all agree: {'yes' if same else 'NO'}")

# %% [markdown]
# ## 5. All four identities in one picture
#
# For two Gaussians $p_1 = \mathcal N(\mu_1, \sigma_1^2)$ and $p_2 = \mathcal N(\mu_2, \sigma_2^2)$:
# their densities, the density of the sum $x_1 + x_2$ of independent draws (wider: variances
# add), the normalised product $p_1 p_2 / Z$ (narrower: precisions add), and the KL both ways.

# %%
def plot_identities(mu1: float = -1.0, var1: float = 0.5, mu2: float = 1.5, var2: float = 2.0):
    grid = np.linspace(-8, 8, 800)
    pdf = lambda m, v: stats.norm.pdf(grid, m, math.sqrt(v))  # noqa: E731
    m_sum, v_sum = (float(v) for v in gaussian_sum(mu1, var1, mu2, var2))
    m_prod, v_prod, log_z = (float(v) for v in gaussian_product(mu1, var1, mu2, var2))
    kl12, kl21 = float(normal_kl(mu1, var1, mu2, var2)), float(normal_kl(mu2, var2, mu1, var1))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(grid, pdf(mu1, var1), label=f"p1 = N({mu1:.1f}, {var1:.2f})")
    ax.plot(grid, pdf(mu2, var2), label=f"p2 = N({mu2:.1f}, {var2:.2f})")
    ax.plot(grid, pdf(m_sum, v_sum), "--", label=f"sum x1 + x2: N({m_sum:.2f}, {v_sum:.2f})")
    ax.plot(grid, pdf(m_prod, v_prod), "-.", label=f"product p1 p2 / Z: N({m_prod:.2f}, {v_prod:.2f})")
    ax.plot(grid, pdf(mu1, var1) * pdf(mu2, var2), ":", color="gray",
            label=f"unnormalised p1 p2 (Z = {math.exp(log_z):.3f})")
    ax.set(title=f"KL(p1||p2) = {kl12:.3f}   KL(p2||p1) = {kl21:.3f}   (nats)",
           xlabel="x", ylabel="density", ylim=(0, None))
    ax.legend(fontsize=8, loc="upper left")
    plt.show()


plot_identities()

# %% [markdown]
# Explore with the sliders (in a running kernel): make one Gaussian very narrow and watch
# the product follow it; move the means apart and watch $Z$ (the gray curve's area) and the
# KL react; set equal variances and compare the KL with $(\mu_1-\mu_2)^2/(2\sigma^2)$.

# %%
import ipywidgets as widgets

widgets.interact(plot_identities,
                 mu1=widgets.FloatSlider(-1.0, min=-4, max=4, step=0.1, description="mu1"),
                 var1=widgets.FloatLogSlider(0.5, base=10, min=-2, max=1, step=0.05, description="var1"),
                 mu2=widgets.FloatSlider(1.5, min=-4, max=4, step=0.1, description="mu2"),
                 var2=widgets.FloatLogSlider(2.0, base=10, min=-2, max=1, step=0.05, description="var2"));

# %% [markdown]
# ## Summary
#
# | identity | formula | dmlib | checked against |
# |---|---|---|---|
# | C1.1 sum (independent) | $\mathcal N(\mu_1+\mu_2,\ \sigma_1^2+\sigma_2^2)$; with correlation $+2\,\mathrm{Cov}$ | `gaussian_sum` | Monte Carlo, convolution by `quad` |
# | C1.2 KL, 1-D | $\frac{\sigma_1^2+(\mu_1-\mu_2)^2}{2\sigma_2^2}+\log\frac{\sigma_2}{\sigma_1}-\frac12$ | `normal_kl`, `normal_kl_monte_carlo` | `quad`, Monte Carlo |
# | C1.2 KL, $d$-dim | sum over coordinates | `normal_kl_diag`, `normal_kl_isotropic` | full-covariance formula, Monte Carlo |
# | C1.3 equal variances | $\frac{(\mu_1-\mu_2)^2}{2\sigma^2}$ (**not** the slide's $\frac{(\mu_1-\mu_2)^2}2-\frac12$) | `normal_kl` | `quad` |
# | C1.4 product of densities | $Z\,\mathcal N(\mu,\sigma^2)$, $\frac1{\sigma^2}=\sum\frac1{\sigma_i^2}$, $\mu=\sigma^2\sum\frac{\mu_i}{\sigma_i^2}$, $Z=\mathcal N(\mu_1;\mu_2,\sigma_1^2+\sigma_2^2)$ | `gaussian_product`, `gaussian_product_diag` | `quad`, grid integration, dmlib's posterior |
#
# ### You can now
#
# * [ ] write down the mean and variance of $a x + b y$ for independent Gaussians, and give
#   an example where dropping independence breaks it;
# * [ ] derive the KL between two 1-D Gaussians from its definition, and extend it to
#   diagonal and isotropic Gaussians in $d$ dimensions;
# * [ ] estimate a KL by Monte Carlo and say how its error bar shrinks with the sample size;
# * [ ] explain why KL$(p\,\|\,q) \ne$ KL$(q\,\|\,p)$, and which is larger when $p$ is wide;
# * [ ] show that with equal variances the KL is $\|\mu_1 - \mu_2\|^2/(2\sigma^2)$, and
#   refute the slide's version with one number;
# * [ ] multiply two Gaussian densities by completing the square, and say why the product is
#   sharper than either factor.
#
# Next: chapter 3, where C1.1 turns a thousand small noising steps into one. Chapter 2
# (normalizing flows) is optional on the way to DDPM.
