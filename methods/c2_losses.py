"""Training objectives of C²-Matching's contrastive correspondence network (stages 1 and 2).

As the specification (``docs/methods/c2_matching.md`` §9) describes the official code computing them:

- margin ranking loss with hardest negatives outside a safe radius (poster eqs. 1-3; the code takes the
  image-2 negatives only among the ground-truth target positions, not over all of image 2);
- teacher-student correlation distillation, KL(teacher || student) of temperature-τ softmaxes over the
  N ground-truth targets (poster eqs. 4-6 with the softmax over the N targets, not all Ref positions),
  batch-mean reduction.

Descriptors are feature maps (C, H, W) at feature-grid resolution (stride 4 in the image); positions
are integer feature-grid coordinates (y, x). Both losses L2-normalise descriptors over channels, so
d(a, b) = 2 - 2·cos(a, b) = squared L2 distance of the unit vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MARGIN = 1.0
SAFE_RADIUS_FEATURE_PX = 4
MIN_CORRESPONDENCES = 128  # images with fewer valid correspondences are skipped
KL_TEMPERATURE = 0.15
ALPHA_KL = 15.0  # stage-2 weight of the distillation term: L = L_margin + ALPHA_KL · L_kl


def gather_descriptors(descriptors: torch.Tensor, positions_yx: torch.Tensor) -> torch.Tensor:
    """Unit descriptors at integer positions: (C, H, W) float, (N, 2) int64 (y, x) -> (N, C)."""
    picked = descriptors[:, positions_yx[:, 0], positions_yx[:, 1]].t()
    return F.normalize(picked, dim=1)


def _chebyshev(a_yx: torch.Tensor, b_yx: torch.Tensor) -> torch.Tensor:
    """(A, 2), (B, 2) integer positions -> (A, B) max(|dy|, |dx|)."""
    return (a_yx[:, None, :] - b_yx[None, :, :]).abs().amax(dim=-1)


def margin_ranking_loss(
    descriptors1: torch.Tensor,
    descriptors2: torch.Tensor,
    positions1_yx: torch.Tensor,
    positions2_yx: torch.Tensor,
    *,
    margin: float = MARGIN,
    safe_radius: int = SAFE_RADIUS_FEATURE_PX,
) -> torch.Tensor:
    """Margin ranking loss of one image pair (stage 1 teacher and stage 2 student).

    ``descriptors1`` (C, H1, W1): features of image 1 (the input); ``descriptors2`` (C, H2, W2): features
    of image 2 (the warped Ref); ``positions1_yx`` / ``positions2_yx`` (N, 2) int64: the N valid
    ground-truth correspondences p -> p'. With unit descriptors f (image 1) and f' (image 2):

        loss = mean_p max(0, margin + d(f_p, f'_p') - min(N1(p), N2(p)))
        N2(p) = min over targets k' in {p'_1..p'_N} with ||k' - p'||_inf > T of d(f_p, f'_k')
        N1(p) = min over all positions k of image 1 with ||k - p||_inf > T of d(f'_p', f_k)

    T = ``safe_radius`` in feature pixels. A term whose candidate set is empty is +inf. Returns a scalar.
    """
    unit1 = F.normalize(descriptors1, dim=0)
    unit2 = F.normalize(descriptors2, dim=0)
    anchors = gather_descriptors(unit1, positions1_yx)  # f_p, (N, C)
    targets = gather_descriptors(unit2, positions2_yx)  # f'_p', (N, C)
    positive = 2.0 - 2.0 * (anchors * targets).sum(dim=1)

    inf = torch.tensor(float("inf"), dtype=positive.dtype, device=positive.device)
    to_targets = 2.0 - 2.0 * anchors @ targets.t()  # (N, N): d(f_p, f'_k')
    too_close2 = _chebyshev(positions2_yx, positions2_yx) <= safe_radius
    negative2 = torch.where(too_close2, inf, to_targets).amin(dim=1)

    height1, width1 = unit1.shape[1:]
    grid1 = torch.stack(
        torch.meshgrid(
            torch.arange(height1, device=unit1.device), torch.arange(width1, device=unit1.device), indexing="ij"
        ),
        dim=-1,
    ).reshape(-1, 2)
    to_image1 = 2.0 - 2.0 * targets @ unit1.reshape(unit1.shape[0], -1)  # (N, H1·W1): d(f'_p', f_k)
    too_close1 = _chebyshev(positions1_yx, grid1) <= safe_radius
    negative1 = torch.where(too_close1, inf, to_image1).amin(dim=1)

    negative = torch.minimum(negative1, negative2)
    return F.relu(margin + positive - negative).mean()


def batch_margin_ranking_loss(
    descriptors1: torch.Tensor,
    descriptors2: torch.Tensor,
    correspondences: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    margin: float = MARGIN,
    safe_radius: int = SAFE_RADIUS_FEATURE_PX,
    min_correspondences: int = MIN_CORRESPONDENCES,
) -> tuple[torch.Tensor, int]:
    """Mean of ``margin_ranking_loss`` over the images of a batch with enough correspondences.

    ``descriptors1`` / ``descriptors2`` (B, C, H, W); ``correspondences[b]`` = (positions1_yx,
    positions2_yx) of image b, (N_b, 2) int64 each. Images with N_b < ``min_correspondences`` are
    skipped. Returns (loss, number of images used); with no usable image the loss is a zero that keeps
    the graph (so a training step can still call backward).
    """
    losses = [
        margin_ranking_loss(descriptors1[b], descriptors2[b], pos1, pos2, margin=margin, safe_radius=safe_radius)
        for b, (pos1, pos2) in enumerate(correspondences)
        if pos1.shape[0] >= min_correspondences
    ]
    if not losses:
        return (descriptors1.sum() + descriptors2.sum()) * 0.0, 0
    return torch.stack(losses).mean(), len(losses)


def correlation_distillation_loss(
    student1: torch.Tensor,
    student2: torch.Tensor,
    teacher1: torch.Tensor,
    teacher2: torch.Tensor,
    *,
    temperature: float = KL_TEMPERATURE,
) -> torch.Tensor:
    """KL(teacher || student) of correlation distributions over the N ground-truth targets.

    Each argument is (N, C): descriptors at the N valid correspondences (row n of ``*1`` at p_n in the
    input image, row n of ``*2`` at p'_n in the Ref); student = LR↑ vs Ref, teacher = HR vs Ref. Rows are
    L2-normalised; logits[p, q] = cos(f1_p, f2_q) / temperature; the softmax runs over q (the N targets).
    Reduction: sum over the N x N matrix divided by N (``batchmean``). The teacher side carries no
    gradient. Returns a scalar.
    """
    student_logits = F.normalize(student1, dim=1) @ F.normalize(student2, dim=1).t() / temperature
    with torch.no_grad():
        teacher_logits = F.normalize(teacher1, dim=1) @ F.normalize(teacher2, dim=1).t() / temperature
    # Student as log-probabilities, teacher as probabilities, as the spec describes the official call.
    return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="batchmean")


def student_objective(
    margin_loss: torch.Tensor, distillation_loss: torch.Tensor, alpha_kl: float = ALPHA_KL
) -> torch.Tensor:
    """Stage-2 total loss L = L_margin + alpha_kl · L_kl (alpha_kl = 15 in the official configuration)."""
    return margin_loss + alpha_kl * distillation_loss
