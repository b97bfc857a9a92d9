/* Linear modules and LoRA: y = x W^T + b + (alpha/r) * B(A(dropout(x))), A [r,in], B [out,r] (as PEFT). */
#include "model_internal.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void linear_mod_forward(ftc_model *m, linear_mod *l, float *y, const float *x, int N, bool training) {
    linear_forward(y, x, P(m, l->w), P(m, l->b), N, l->in, l->out);
    if (l->lora_a < 0) return;
    int r = (int)m->params[l->lora_a].shape[0];
    const float *xin = x;
    if (training && l->lora_dropout > 0) {
        dropout_forward(l->lora_xd, l->lora_mask, x, N * l->in, l->lora_dropout, &m->rng);
        xin = l->lora_xd;
    }
    linear_forward(l->lora_ax, xin, P(m, l->lora_a), NULL, N, l->in, r);
    ftc_matmul(false, true, N, l->out, r, l->lora_scale, l->lora_ax, r, P(m, l->lora_b), r, 1.0f, y, l->out);
}

void linear_mod_backward(ftc_model *m, linear_mod *l, float *dx, const float *dy, const float *x, int N) {
    linear_backward(dx, G(m, l->w), G(m, l->b), dy, x, P(m, l->w), N, l->in, l->out);
    if (l->lora_a < 0) return;
    int r = (int)m->params[l->lora_a].shape[0];
    bool drop = m->training && l->lora_dropout > 0;
    const float *xin = drop ? l->lora_xd : x;
    float *gax = m->g_lora; /* d(A x) = scale * dy B */
    ftc_matmul(false, false, N, r, l->out, l->lora_scale, dy, l->out, P(m, l->lora_b), r, 0.0f, gax, r);
    if (G(m, l->lora_b))
        ftc_matmul(true, false, l->out, r, N, l->lora_scale, dy, l->out, l->lora_ax, r, 1.0f, G(m, l->lora_b), r);
    if (G(m, l->lora_a)) ftc_matmul(true, false, r, l->in, N, 1.0f, gax, r, xin, l->in, 1.0f, G(m, l->lora_a), l->in);
    if (!dx) return;
    if (!drop) {
        ftc_matmul(false, false, N, l->in, r, 1.0f, gax, r, P(m, l->lora_a), l->in, 1.0f, dx, l->in);
        return;
    }
    /* through the dropout: the dropped input is no longer needed, so its buffer holds d(xin) */
    ftc_matmul(false, false, N, l->in, r, 1.0f, gax, r, P(m, l->lora_a), l->in, 0.0f, l->lora_xd, l->in);
    dropout_backward(dx, l->lora_xd, l->lora_mask, N * l->in);
}

static int n_mods(void) { return 8; }
static linear_mod *mod_at(layer_params *l, int j) {
    linear_mod *mods[] = {&l->qkv, &l->q, &l->k, &l->v, &l->o, &l->up, &l->gate, &l->down};
    return mods[j];
}

int model_max_lora_rank(const ftc_model *m) {
    int r = 0;
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < n_mods(); j++) {
            linear_mod *lm = mod_at(&m->layers[i], j);
            if (lm->w >= 0 && lm->lora_a >= 0 && m->params[lm->lora_a].shape[0] > r) r = (int)m->params[lm->lora_a].shape[0];
        }
    return r;
}
