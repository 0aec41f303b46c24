"""Training objectives of SSEN (paper 000 eq. 4) and E2ENT² (paper 001 eqs. 8-10).

Images are (N, C, H, W) float tensors in the network's output range ([0, 1] RGB for both methods);
critic outputs are raw (pre-sigmoid) discriminator scores of any shape, one per real/fake item or patch.
All losses return a scalar tensor and are differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHARBONNIER_EPS = 1e-6  # SSEN eq. 4
E2ENT2_REC_WEIGHT = 1e-2  # E2ENT² §4.1: weight of L_rec
E2ENT2_ADV_WEIGHT = 1e-5  # E2ENT² §4.1: weight of L_adv


def charbonnier_loss(sr: torch.Tensor, hr: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """SSEN's reconstruction loss: mean over all elements of sqrt((sr - hr)² + eps²).

    The paper writes sqrt(‖I_HR − I_SR‖² + ε²) over the whole image; it is read as the per-pixel penalty of
    its cited LapSRN (ssen.md §3 row 15). ``sr``, ``hr``: same shape, any range.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    return torch.sqrt((sr - hr) ** 2 + eps * eps).mean()


def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """E2ENT²'s L_rec (eq. 8): mean absolute error over all elements."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    return (sr - hr).abs().mean()


def relativistic_discriminator_loss(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    """E2ENT² eq. 9 with the relativistic average discriminator D(a, b) = sigmoid(C(a) − mean C(b)):

    L_D = −E_real[log D(x_real, x_fake)] − E_fake[log(1 − D(x_fake, x_real))].
    Written with softplus (−log sigmoid(z) = softplus(−z), −log(1 − sigmoid(z)) = softplus(z)) for stability.
    """
    real_vs_fake = critic_real - critic_fake.mean()
    fake_vs_real = critic_fake - critic_real.mean()
    return F.softplus(-real_vs_fake).mean() + F.softplus(fake_vs_real).mean()


def relativistic_generator_loss(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    """E2ENT² eq. 10: L_G = −E_real[log(1 − D(x_real, x_fake))] − E_fake[log D(x_fake, x_real)].

    Gradients flow into both critic outputs as given; detach ``critic_real`` in the generator step if the
    real scores should be treated as constants.
    """
    real_vs_fake = critic_real - critic_fake.mean()
    fake_vs_real = critic_fake - critic_real.mean()
    return F.softplus(real_vs_fake).mean() + F.softplus(-fake_vs_real).mean()


def e2ent2_generator_loss(
    sr: torch.Tensor,
    hr: torch.Tensor,
    critic_real: torch.Tensor,
    critic_fake: torch.Tensor,
    *,
    rec_weight: float = E2ENT2_REC_WEIGHT,
    adv_weight: float = E2ENT2_ADV_WEIGHT,
) -> torch.Tensor:
    """One branch's generator objective: ``rec_weight``·L1(sr, hr) + ``adv_weight``·L_G (paper weights 1e-2, 1e-5).

    E2ENT² applies it to both the RefSR output and the auxiliary SISR output (each with its own
    discriminator); the caller sums the two branches.
    """
    return rec_weight * l1_loss(sr, hr) + adv_weight * relativistic_generator_loss(critic_real, critic_fake)
