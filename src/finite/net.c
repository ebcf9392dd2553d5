/* net.c -- the finite one-hidden-layer networks shared by the theory (lkr.c) and the sampler
 * (langevin.c): validation and the patch-major layout of the inputs. */
#include "nk_finite.h"

#include <math.h>
#include <string.h>

void nk_finite_net_default(nk_finite_net *net)
{
    memset(net, 0, sizeof *net);
    net->kind = NK_NET_DENSE;
    net->act.kind = NK_ACT_ERF;
    net->mask = 1;
    net->lambda0 = 1;
    net->lambda1 = 1;
    net->temperature = 0.1;
}

static const char *kind_name(nk_net_kind k)
{
    return k == NK_NET_DENSE ? "dense" : k == NK_NET_CONV ? "conv" : "lc";
}

nk_status nk_finite_shape(const nk_finite_net *net, const nk_array *x, size_t *npatch,
                          size_t *patch_size, nk_error *err)
{
    nk_act_kind a = net->act.kind;
    if (a != NK_ACT_IDENTITY && a != NK_ACT_ERF)
        return nk_fail(err, NK_ERR_INPUT,
                       "finite width: activation not supported (the kernel renormalization theory of Pacelli et al. "
                       "and Aiudi et al. holds for odd activations; use erf or identity)");
    if (!(net->lambda0 > 0) || !(net->lambda1 > 0) || !isfinite(net->lambda0) || !isfinite(net->lambda1))
        return nk_fail(err, NK_ERR_INPUT, "finite width: the prior precisions lambda0, lambda1 must be positive and finite");
    if (!(net->temperature > 0) || !isfinite(net->temperature))
        return nk_fail(err, NK_ERR_INPUT, "finite width: the temperature T must be positive and finite");
    if (!x || !x->data || x->ndim < 2 || x->shape[0] == 0)
        return nk_fail(err, NK_ERR_INPUT, "finite width: inputs must be (N, D) or (N, H, W, C) with N > 0");
    size_t per = 1;
    for (int d = 1; d < x->ndim; d++) per *= x->shape[d];
    if (net->kind == NK_NET_DENSE) {
        *npatch = 1;
        *patch_size = per;
        return per ? NK_OK : nk_fail(err, NK_ERR_INPUT, "finite width: empty samples");
    }
    if (net->kind != NK_NET_CONV && net->kind != NK_NET_LC)
        return nk_fail(err, NK_ERR_INPUT, "finite width: unknown network kind %d", (int)net->kind);
    if (x->ndim != 4)
        return nk_fail(err, NK_ERR_INPUT, "finite width: a %s network needs images (N, H, W, C), got %d axes",
                       kind_name(net->kind), x->ndim);
    size_t H = x->shape[1], W = x->shape[2], C = x->shape[3], m = (size_t)(net->mask > 0 ? net->mask : 0);
    if (m == 0 || H % m || W % m)
        return nk_fail(err, NK_ERR_INPUT, "finite width: mask %d does not divide the %zux%zu image (patches are "
                       "non-overlapping mask x mask blocks: choose a divisor of H and W)", net->mask, H, W);
    *npatch = (H / m) * (W / m);
    *patch_size = m * m * C;
    return NK_OK;
}

nk_status nk_finite_patches(const nk_finite_net *net, const nk_array *x, nk_array *out,
                            nk_error *err)
{
    size_t np, M;
    nk_status st = nk_finite_shape(net, x, &np, &M, err);
    if (st != NK_OK) return st;
    size_t n = x->shape[0], shape[3] = {n, np, M};
    if ((st = nk_array_alloc(out, 3, shape, err)) != NK_OK) return st;
    if (net->kind == NK_NET_DENSE) {
        memcpy(out->data, x->data, n * M * sizeof(double));
        return NK_OK;
    }
    size_t H = x->shape[1], W = x->shape[2], C = x->shape[3], m = (size_t)net->mask, pw = W / m;
    for (size_t s = 0; s < n; s++)
        for (size_t r = 0; r < H; r++)
            for (size_t c = 0; c < W; c++) {
                size_t patch = (r / m) * pw + c / m, within = ((r % m) * m + c % m) * C;
                memcpy(out->data + (s * np + patch) * M + within, x->data + ((s * H + r) * W + c) * C, C * sizeof(double));
            }
    return NK_OK;
}
