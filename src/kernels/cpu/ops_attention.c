/* Scaled dot-product attention with causal and key-padding masks and grouped-query heads.
 * Visibility of key j to query i: (!causal || j <= i) && (key_mask[j] || j == i). A query always sees itself,
 * so no row is ever empty (padded rows would otherwise be 0/0 = NaN); real query rows see exactly what
 * PyTorch/transformers let them see, and padded rows' outputs are never used by a loss. */
#include "ftc/ops.h"
#include "vmath.h"
#include "ftc/matmul.h"
#include "ftc/threads.h"
#include <math.h>
#include <string.h>

static inline bool visible(const uint8_t *mask_b, bool causal, int i, int j) {
    if (causal && j > i) return false;
    return !mask_b || mask_b[j] || j == i;
}

/* Rows of queries per block: causal attention computes only the key columns up to the block's last query. */
enum { QBLOCK = 64 };

/* One product of the attention, in f32 or (opts->bf16) in bf16 with f32 accumulation. Called inside the
 * pool jobs below, so ftc_matmul runs it on this thread. */
static void att_matmul(bool bf16, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    if (bf16)
        ftc_matmul_bf16(ta, tb, M, N, K, alpha, A, FTC_MM_F32, lda, B, FTC_MM_F32, ldb, beta, C, ldc);
    else
        ftc_matmul(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static bool att_dropped(const attention_opts *o) { return o && o->dropout_p > 0.0f; }

/* The arguments of one attention pass, shared by its parallel tasks (item functions below, one task per
 * index: a (b, h) pair, a (b, kv head) pair or a (b, h, query block) triple). */
typedef struct {
    float *out, *att, *lse, *dq, *dk, *dv, *scratch, *delta, *hk, *hv;
    const float *q, *k, *v, *dout, *P, *cout, *clse, *catt;
    const uint8_t *key_mask;
    const attention_opts *o;
    int B, T, H, Hkv, D, group, nqb;
    bool causal, bf16, drop;
    float scale, keep;
    uint32_t thr;
    size_t qs, ks, hs;
} att_ctx;

/* Runs item(c, i) for i = 0..n-1: on the pool when worth it, else on this thread in order. */
static void att_for(bool worth, int n, void (*item)(void *c, int i), att_ctx *c) {
    if (worth) ftc_parallel_for(n, item, c);
    else
        for (int i = 0; i < n; i++) item(c, i);
}

static void values_item(void *ctx, int idx) {
    const att_ctx *c = ctx;
    const int T = c->T, H = c->H, D = c->D, group = c->group, b = idx / H, h = idx % H;
    const size_t qs = c->qs, ks = c->ks;
    const bool causal = c->causal, bf16 = c->bf16;
    const float *v = c->v, *P = c->P;
    float *out = c->out;
    const float *vb = v + (size_t)b * T * ks + (size_t)(h / group) * D;
    const float *pbh = P + ((size_t)b * H + h) * T * T;
    float *ob = out + (size_t)b * T * qs + (size_t)h * D;
    for (int i0 = 0; i0 < T; i0 += QBLOCK) {
        const int rows = T - i0 < QBLOCK ? T - i0 : QBLOCK, cols = causal ? i0 + rows : T;
        att_matmul(bf16, false, false, rows, D, cols, 1.0f, pbh + (size_t)i0 * T, T, vb, (int)ks, 0.0f,
                   ob + (size_t)i0 * qs, (int)qs);
    }
}

/* out[b,i,h,:] = sum_j P[b,h,i,j] v[b,j,g,:] for every (b,h); P = att, or att_drop under dropout. */
static void attention_values(float *out, const float *P, const float *v, int B, int T, int H, int Hkv, int D,
                             bool causal, bool bf16) {
    const int group = H / Hkv;
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    att_ctx c = {.out = out, .P = P, .v = v, .B = B, .T = T, .H = H, .Hkv = Hkv, .D = D, .group = group,
                 .causal = causal, .bf16 = bf16, .qs = qs, .ks = ks};
    att_for((long)B * H * T * T * D > 65536, B * H, values_item, &c);
}

static void forward_item(void *ctx, int idx) {
    const att_ctx *c = ctx;
    const int T = c->T, H = c->H, D = c->D, group = c->group, b = idx / H, h = idx % H;
    const size_t qs = c->qs, ks = c->ks;
    const bool causal = c->causal, bf16 = c->bf16, drop = c->drop;
    const float scale = c->scale, *q = c->q, *k = c->k, *v = c->v;
    const uint8_t *key_mask = c->key_mask;
    float *out = c->out, *att = c->att;
    const int g = h / group;
    const uint8_t *mb = key_mask ? key_mask + (size_t)b * T : NULL;
    const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
    const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
    const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
    float *ob = out + (size_t)b * T * qs + (size_t)h * D;
    float *pbh = att + ((size_t)b * H + h) * T * T;
    for (int i0 = 0; i0 < T; i0 += QBLOCK) {
        const int rows = T - i0 < QBLOCK ? T - i0 : QBLOCK;
        const int cols = causal ? i0 + rows : T; /* keys any row of the block can see */
        float *pblk = pbh + (size_t)i0 * T;
        att_matmul(false /* scores stay f32: see attention_opts */, false, true, rows, cols, D, scale, qb + (size_t)i0 * qs, (int)qs, kb, (int)ks, 0.0f,
                   pblk, T);
        for (int i = i0; i < i0 + rows; i++) {
            float *p = pbh + (size_t)i * T;
            float mx = -INFINITY;
            for (int j = 0; j < cols; j++) {
                if (!visible(mb, causal, i, j)) p[j] = -INFINITY;
                else if (p[j] > mx) mx = p[j];
            }
            /* exp(-inf - mx) = 0 for the hidden keys; sum >= 1: the row's max contributes exp(0) */
            float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, cols));
            for (int j = 0; j < cols; j++) p[j] *= inv;
            for (int j = cols; j < T; j++) p[j] = 0.0f;
        }
        if (!drop) /* under dropout the values wait for the mask */
            att_matmul(bf16, false, false, rows, D, cols, 1.0f, pblk, T, vb, (int)ks, 0.0f,
                       ob + (size_t)i0 * qs, (int)qs);
    }
}

/* Per (b,h), with kv head g = h / (H/Hkv) and scale = 1/sqrt(D):
 *   att[b,h,i,j] = softmax_j(q[b,i,h,:] . k[b,j,g,:] * scale) over visible j (0 elsewhere)
 *   out[b,i,h,:] = sum_j att'[b,h,i,j] v[b,j,g,:],  att' = att, or att * drop_mask under dropout
 * q,out [B,T,H,D]; k,v [B,T,Hkv,D]; att [B,H,T,T]. Both products are matmuls on a block of query rows
 * (single-threaded inside this pool job); one (b,h) per thread: outputs are disjoint. Dropout draws
 * its mask for the whole att in one call after the softmax (the rng use of a separate dropout pass). */
void ftc_attention_forward_ex(float *out, float *att, const float *q, const float *k, const float *v,
                          const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                          const attention_opts *o) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D; /* row strides over t */
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
    att_ctx c = {.out = out, .att = att, .q = q, .k = k, .v = v, .key_mask = key_mask, .B = B, .T = T, .H = H,
                 .Hkv = Hkv, .D = D, .group = group, .causal = causal, .bf16 = bf16, .drop = drop, .scale = scale,
                 .qs = qs, .ks = ks};
    att_for((long)B * H * T * T * D > 65536, B * H, forward_item, &c);
    if (drop) {
        ftc_dropout_forward(o->att_drop, o->drop_mask, att, (int)((size_t)B * H * T * T), o->dropout_p, o->rng);
        attention_values(out, o->att_drop, v, B, T, H, Hkv, D, causal, bf16);
    }
}

void ftc_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal) {
    ftc_attention_forward_ex(out, att, q, k, v, key_mask, B, T, H, Hkv, D, causal, NULL);
}

static void backward_item(void *ctx, int idx) {
    const att_ctx *c = ctx;
    const int T = c->T, H = c->H, Hkv = c->Hkv, D = c->D, group = c->group, b = idx / Hkv, g = idx % Hkv;
    const size_t qs = c->qs, ks = c->ks;
    const bool bf16 = c->bf16, drop = c->drop;
    const float scale = c->scale, *q = c->q, *k = c->k, *v = c->v, *dout = c->dout, *att = c->catt;
    const attention_opts *o = c->o;
    float *dq = c->dq, *dk = c->dk, *dv = c->dv, *scratch = c->scratch;
    const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
    const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
    float *dkb = dk ? dk + (size_t)b * T * ks + (size_t)g * D : NULL;
    float *dvb = dv ? dv + (size_t)b * T * ks + (size_t)g * D : NULL;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const size_t a0 = ((size_t)b * H + h) * T * T;
        const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
        const float *dob = dout + (size_t)b * T * qs + (size_t)h * D;
        float *dqb = dq ? dq + (size_t)b * T * qs + (size_t)h * D : NULL;
        const float *P = att + a0, *Pv = drop ? o->att_drop + a0 : P;
        float *dS = scratch + a0;
        if (dvb) att_matmul(bf16, true, false, T, D, T, 1.0f, Pv, T, dob, (int)qs, 1.0f, dvb, (int)ks);
        if (!dqb && !dkb) continue;
        att_matmul(bf16, false, true, T, T, D, 1.0f, dob, (int)qs, vb, (int)ks, 0.0f, dS, T);
        for (int i = 0; i < T; i++) {
            float *dr = dS + (size_t)i * T;
            const float *pr = P + (size_t)i * T;
            if (drop) {
                const float *mr = o->drop_mask + a0 + (size_t)i * T;
                for (int j = 0; j < T; j++) dr[j] *= mr[j];
            }
            double pdp = 0; /* sum_j P[i,j] dP[i,j] */
            for (int j = 0; j < T; j++) pdp += (double)pr[j] * dr[j];
            for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - (float)pdp);
        }
        if (dqb) att_matmul(bf16, false, false, T, D, T, scale, dS, T, kb, (int)ks, 1.0f, dqb, (int)qs);
        if (dkb) att_matmul(bf16, true, false, T, D, T, scale, dS, T, qb, (int)qs, 1.0f, dkb, (int)ks);
    }
}

/* With P = att, P' = the probabilities forward multiplied by v (P * drop_mask under dropout) and dO = dout,
 * per (b,h), as matmuls on T x T blocks:
 *   dv += P'^T dO;  dP = (dO v^T) [* drop_mask];  dS = P * (dP - rowsum(P * dP))
 *   dq += scale dS k;  dk += scale dS^T q
 * Threads take one (b, kv head) each and walk that group's query heads in order, so the sums into a shared
 * kv head happen in a fixed order (deterministic). scratch [B,H,T,T] holds dP, then dS. Masked entries have
 * P = 0, hence dS = 0: masking needs no special case here. */
void ftc_attention_backward_ex(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch,
                           const attention_opts *o) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
    att_ctx c = {.dq = dq, .dk = dk, .dv = dv, .scratch = scratch, .dout = dout, .catt = att, .q = q, .k = k, .v = v,
                 .o = o, .B = B, .T = T, .H = H, .Hkv = Hkv, .D = D, .group = group, .bf16 = bf16, .drop = drop,
                 .scale = scale, .qs = qs, .ks = ks};
    att_for((long)B * H * T * T * D > 65536, B * Hkv, backward_item, &c);
}

void ftc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch) {
    ftc_attention_backward_ex(dq, dk, dv, dout, att, q, k, v, B, T, H, Hkv, D, scratch, NULL);
}

/* ---- tiled attention (FlashAttention-style): no [T, T] buffer ----
 * Work is split into tiles of FQ query rows x FK key columns; a tile's scores live in a stack buffer of
 * FQ x FK floats (64 KB; backward three of them). 256-key tiles rather than 64: the backward's five products
 * per tile run as fewer, larger matmuls (SmolLM2 heads at T = 1024, one thread: 37 ms instead of 64-90 ms). Forward, per (b, h, query block) task: for each key tile up to the causal diagonal,
 * S = scale q k^T, then the online softmax -- row max m' = max(m, max_j S), the accumulated output and row sum
 * rescaled by exp(m - m'), P = exp(S - m') added to the sum and (times the dropout mask) multiplied by v into
 * out -- and at the end out /= sum, lse = m + log(sum). Backward, per (b, h): Delta_i = dO_i . O_i (equal to
 * sum_j P'_ij dP_ij with dropout: O_i = sum_j P'_ij v_j), then per tile P = exp(S - lse) recomputed,
 *   dv += P'^T dO;  dP = (dO v^T) [* mask];  dS = P (dP - Delta);  dq += scale dS k;  dk += scale dS^T q.
 * One (b, h) per task: dq rows are the task's own; under GQA the query heads of one kv head write their dk,
 * dv into per-head scratch rows summed afterwards in head order (deterministic, and B*H tasks rather than
 * B*Hkv keep both cores busy). */
enum { FQ = 64, FK = 256 };

static void drop_tile(float *s, int rows, int bc, uint64_t key, uint64_t base, uint64_t T, uint32_t thr,
                      float keep) {
    for (int r = 0; r < rows; r++) {
        float *sr = s + (size_t)r * FK;
        uint64_t b0 = base + (uint64_t)r * T;
        for (int c = 0; c < bc; c++) sr[c] *= vm_select(dropout_keep(key, b0 + (uint64_t)c, thr), keep, 0.0f);
    }
}

static void flash_forward_item(void *ctx, int idx) {
    const att_ctx *c = ctx;
    const int T = c->T, H = c->H, D = c->D, group = c->group, nqb = c->nqb;
    const int b = idx / (H * nqb), h = idx / nqb % H, qb = idx % nqb;
    const size_t qs = c->qs, ks = c->ks;
    const bool causal = c->causal, bf16 = c->bf16, drop = c->drop;
    const float scale = c->scale, keep = c->keep, *q = c->q, *k = c->k, *v = c->v;
    const uint32_t thr = c->thr;
    const uint8_t *key_mask = c->key_mask;
    const attention_opts *o = c->o;
    float *out = c->out, *lse = c->lse;
    float S[FQ * FK], mrow[FQ];
    double lrow[FQ];
    const int i0 = qb * FQ, rows = T - i0 < FQ ? T - i0 : FQ;
    const int cols = causal ? i0 + rows : T;
    const uint8_t *mb = key_mask ? key_mask + (size_t)b * T : NULL;
    const float *qblk = q + (size_t)b * T * qs + (size_t)i0 * qs + (size_t)h * D;
    const float *kb = k + (size_t)b * T * ks + (size_t)(h / group) * D;
    const float *vb = v + (size_t)b * T * ks + (size_t)(h / group) * D;
    float *oblk = out + (size_t)b * T * qs + (size_t)i0 * qs + (size_t)h * D;
    for (int r = 0; r < rows; r++) {
        memset(oblk + (size_t)r * qs, 0, (size_t)D * sizeof(float));
        mrow[r] = -INFINITY, lrow[r] = 0;
    }
    for (int j0 = 0; j0 < cols; j0 += FK) {
        const int bc = cols - j0 < FK ? cols - j0 : FK;
        att_matmul(false /* scores stay f32 */, false, true, rows, bc, D, scale, qblk, (int)qs,
                   kb + (size_t)j0 * ks, (int)ks, 0.0f, S, FK);
        for (int r = 0; r < rows; r++) {
            const int i = i0 + r;
            float *s = S + (size_t)r * FK, mx = mrow[r];
            for (int c = 0; c < bc; c++) {
                if (!visible(mb, causal, i, j0 + c)) s[c] = -INFINITY;
                else if (s[c] > mx) mx = s[c];
            }
            if (mx == -INFINITY) { /* nothing visible yet: P = 0 */
                memset(s, 0, (size_t)bc * sizeof(float));
                continue;
            }
            if (mx > mrow[r]) { /* rescale what was accumulated under the old max */
                float alpha = mrow[r] == -INFINITY ? 0.0f : expf(mrow[r] - mx);
                lrow[r] *= alpha;
                float *orow = oblk + (size_t)r * qs;
                for (int d = 0; d < D; d++) orow[d] *= alpha;
                mrow[r] = mx;
            }
            lrow[r] += ftc_vm_exp_sum(s, s, mx, bc);
        }
        if (drop)
            drop_tile(S, rows, bc, o->drop_key, (((size_t)b * H + h) * T + i0) * (size_t)T + j0,
                      (uint64_t)T, thr, keep);
        att_matmul(bf16, false, false, rows, D, bc, 1.0f, S, FK, vb + (size_t)j0 * ks, (int)ks, 1.0f,
                   oblk, (int)qs);
    }
    float *lb = lse + ((size_t)b * H + h) * T + i0;
    for (int r = 0; r < rows; r++) {
        float inv = (float)(1.0 / lrow[r]), *orow = oblk + (size_t)r * qs;
        for (int d = 0; d < D; d++) orow[d] *= inv;
        lb[r] = mrow[r] + (float)log(lrow[r]);
    }
}

void ftc_attention_flash_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                                 const attention_opts *o) {
    const int group = H / Hkv, nqb = (T + FQ - 1) / FQ;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
    const uint32_t thr = drop ? dropout_threshold(o->dropout_p) : 0;
    const float keep = drop ? (o->dropout_p >= 1.0f ? 0.0f : 1.0f / (1.0f - o->dropout_p)) : 1.0f;
    att_ctx c = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .key_mask = key_mask, .o = o, .B = B, .T = T,
                 .H = H, .Hkv = Hkv, .D = D, .group = group, .nqb = nqb, .causal = causal, .bf16 = bf16,
                 .drop = drop, .scale = scale, .keep = keep, .thr = thr, .qs = qs, .ks = ks};
    att_for((long)B * H * T * T * D > 65536, B * H * nqb, flash_forward_item, &c);
}

size_t ftc_attention_flash_scratch_floats(int B, int T, int H, int Hkv, int D) {
    size_t delta = (size_t)B * H * T;
    return H == Hkv ? delta : delta + 2 * (size_t)B * T * H * D;
}

static void flash_backward_item(void *ctx, int idx) {
    const att_ctx *c = ctx;
    const int T = c->T, H = c->H, D = c->D, group = c->group, b = idx / H, h = idx % H;
    const size_t qs = c->qs, ks = c->ks, hs = c->hs;
    const bool causal = c->causal, bf16 = c->bf16, drop = c->drop;
    const float scale = c->scale, keep = c->keep, *q = c->q, *k = c->k, *v = c->v, *dout = c->dout, *out = c->cout,
                *lse = c->clse;
    const uint32_t thr = c->thr;
    const uint8_t *key_mask = c->key_mask;
    const attention_opts *o = c->o;
    float *dq = c->dq, *dk = c->dk, *dv = c->dv, *delta = c->delta, *hk = c->hk, *hv = c->hv;
    float P[FQ * FK], Pd[FQ * FK], dS[FQ * FK];
    const int g = h / group;
    const uint8_t *mb = key_mask ? key_mask + (size_t)b * T : NULL;
    const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
    const float *ob = out + (size_t)b * T * qs + (size_t)h * D;
    const float *dob = dout + (size_t)b * T * qs + (size_t)h * D;
    const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
    const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
    const float *lb = lse + ((size_t)b * H + h) * T;
    float *db = delta + ((size_t)b * H + h) * T;
    float *dqb = dq ? dq + (size_t)b * T * qs + (size_t)h * D : NULL;
    float *dkb = !dk ? NULL : group > 1 ? hk + (size_t)b * T * qs + (size_t)h * D : dk + (size_t)b * T * ks + (size_t)g * D;
    float *dvb = !dv ? NULL : group > 1 ? hv + (size_t)b * T * qs + (size_t)h * D : dv + (size_t)b * T * ks + (size_t)g * D;
    for (int t = 0; t < T && group > 1; t++) {
        if (dkb) memset(dkb + (size_t)t * hs, 0, (size_t)D * sizeof(float));
        if (dvb) memset(dvb + (size_t)t * hs, 0, (size_t)D * sizeof(float));
    }
    for (int i0 = 0; i0 < T; i0 += FQ) {
        const int rows = T - i0 < FQ ? T - i0 : FQ, cols = causal ? i0 + rows : T;
        /* Delta: in f32, dO . O; in bf16 the forward's bf16 products make O disagree with the bf16 dP
         * by their rounding, and dS's rows would no longer sum to 0 (a bias in dq of that size), so a
         * first pass sums P dP from the very dP the second pass uses */
        double dsum[FQ];
        for (int r = 0; r < rows; r++) {
            const float *orow = ob + (size_t)(i0 + r) * qs, *drow = dob + (size_t)(i0 + r) * qs;
            double s = 0;
            for (int d = 0; bf16 ? 0 : d < D; d++) s += (double)orow[d] * drow[d];
            dsum[r] = s;
        }
        for (int j0 = 0; bf16 && (dqb || dkb) && j0 < cols; j0 += FK) {
            const int bc = cols - j0 < FK ? cols - j0 : FK;
            att_matmul(false, false, true, rows, bc, D, scale, qb + (size_t)i0 * qs, (int)qs,
                       kb + (size_t)j0 * ks, (int)ks, 0.0f, P, FK);
            att_matmul(bf16, false, true, rows, bc, D, 1.0f, dob + (size_t)i0 * qs, (int)qs,
                       vb + (size_t)j0 * ks, (int)ks, 0.0f, dS, FK);
            if (drop)
                drop_tile(dS, rows, bc, o->drop_key, (((size_t)b * H + h) * T + i0) * (size_t)T + j0,
                          (uint64_t)T, thr, keep);
            for (int r = 0; r < rows; r++) {
                float *pr = P + (size_t)r * FK;
                const float *dr = dS + (size_t)r * FK;
                for (int c = 0; c < bc; c++)
                    if (!visible(mb, causal, i0 + r, j0 + c)) pr[c] = -INFINITY;
                ftc_vm_exp_sum(pr, pr, lb[i0 + r], bc);
                double s = 0;
                for (int c = 0; c < bc; c++) s += (double)pr[c] * dr[c];
                dsum[r] += s;
            }
        }
        for (int r = 0; r < rows; r++) db[i0 + r] = (float)dsum[r];
        for (int j0 = 0; j0 < cols; j0 += FK) {
            const int bc = cols - j0 < FK ? cols - j0 : FK;
            att_matmul(false, false, true, rows, bc, D, scale, qb + (size_t)i0 * qs, (int)qs,
                       kb + (size_t)j0 * ks, (int)ks, 0.0f, P, FK);
            for (int r = 0; r < rows; r++) {
                float *pr = P + (size_t)r * FK;
                for (int c = 0; c < bc; c++)
                    if (!visible(mb, causal, i0 + r, j0 + c)) pr[c] = -INFINITY;
                ftc_vm_exp_sum(pr, pr, lb[i0 + r], bc);
            }
            const float *Pv = P;
            if (drop) {
                for (int r = 0; r < rows; r++) memcpy(Pd + (size_t)r * FK, P + (size_t)r * FK, (size_t)bc * sizeof(float));
                drop_tile(Pd, rows, bc, o->drop_key, (((size_t)b * H + h) * T + i0) * (size_t)T + j0,
                          (uint64_t)T, thr, keep);
                Pv = Pd;
            }
            if (dvb)
                att_matmul(bf16, true, false, bc, D, rows, 1.0f, Pv, FK, dob + (size_t)i0 * qs, (int)qs, 1.0f,
                           dvb + (size_t)j0 * hs, (int)hs);
            if (!dqb && !dkb) continue;
            att_matmul(bf16, false, true, rows, bc, D, 1.0f, dob + (size_t)i0 * qs, (int)qs,
                       vb + (size_t)j0 * ks, (int)ks, 0.0f, dS, FK);
            if (drop) /* dP * mask = dP * (P'/P), but P' = 0 where P underflowed: use the mask itself */
                drop_tile(dS, rows, bc, o->drop_key, (((size_t)b * H + h) * T + i0) * (size_t)T + j0,
                          (uint64_t)T, thr, keep);
            for (int r = 0; r < rows; r++) {
                float *dr = dS + (size_t)r * FK;
                const float *pr = P + (size_t)r * FK;
                const float dl = db[i0 + r];
                for (int c = 0; c < bc; c++) dr[c] = pr[c] * (dr[c] - dl);
            }
            if (dqb)
                att_matmul(bf16, false, false, rows, D, bc, scale, dS, FK, kb + (size_t)j0 * ks, (int)ks, 1.0f,
                           dqb + (size_t)i0 * qs, (int)qs);
            if (dkb)
                att_matmul(bf16, true, false, bc, D, rows, scale, dS, FK, qb + (size_t)i0 * qs, (int)qs, 1.0f,
                           dkb + (size_t)j0 * hs, (int)hs);
        }
    }
}

/* dk, dv rows [lo, hi) += the query heads' rows of each kv head, in head order */
static void gqa_sum_range(void *ctx, int64_t lo, int64_t hi) {
    const att_ctx *c = ctx;
    const int Hkv = c->Hkv, D = c->D, group = c->group;
    const size_t qs = c->qs, ks = c->ks;
    float *dk = c->dk, *dv = c->dv, *hk = c->hk, *hv = c->hv;
    for (int64_t n = lo; n < hi; n++)
        for (int g = 0; g < Hkv; g++)
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int d = 0; d < D; d++) {
                    if (dk) dk[(size_t)n * ks + (size_t)g * D + d] += hk[(size_t)n * qs + (size_t)h * D + d];
                    if (dv) dv[(size_t)n * ks + (size_t)g * D + d] += hv[(size_t)n * qs + (size_t)h * D + d];
                }
}

void ftc_attention_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v,
                                  const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                                  float *scratch, const attention_opts *o) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
    const uint32_t thr = drop ? dropout_threshold(o->dropout_p) : 0;
    const float keep = drop ? (o->dropout_p >= 1.0f ? 0.0f : 1.0f / (1.0f - o->dropout_p)) : 1.0f;
    float *delta = scratch;
    /* GQA: each query head's dk, dv rows [B,T,H,D]; MHA writes dk, dv directly (one query head per kv head) */
    float *hk = group > 1 && dk ? scratch + (size_t)B * H * T : NULL;
    float *hv = group > 1 && dv ? scratch + (size_t)B * H * T + (size_t)B * T * qs : NULL;
    const size_t hs = group > 1 ? qs : ks; /* row stride of the per-head dk, dv */
    att_ctx c = {.dq = dq, .dk = dk, .dv = dv, .delta = delta, .hk = hk, .hv = hv, .dout = dout, .cout = out,
                 .clse = lse, .q = q, .k = k, .v = v, .key_mask = key_mask, .o = o, .B = B, .T = T, .H = H,
                 .Hkv = Hkv, .D = D, .group = group, .causal = causal, .bf16 = bf16, .drop = drop, .scale = scale,
                 .keep = keep, .thr = thr, .qs = qs, .ks = ks, .hs = hs};
    att_for((long)B * H * T * T * D > 65536, B * H, flash_backward_item, &c);
    if (group == 1 || (!dk && !dv)) return;
    /* sum the query heads of each kv head into dk, dv, in head order */
    ftc_parallel_range((int64_t)B * T, (long)B * T * H * D > 65536, gqa_sum_range, &c);
}
