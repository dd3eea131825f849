/* BIN and SN forward and backward on x (N, C, M), contiguous (or its channels_last form, see below): included by
 * native.c once per scalar type (scalar_t; FN(name) gives the type's suffix). Statistics and their gradients are
 * double. The formulas are those of BatchInstanceNormFunction and SwitchableNormFunction (batch_instance.py,
 * switchable.py), which the tests check against the papers' equations; stats are stacked (2, K, N, C): means, then
 * biased variances, of each kind k. Exact in float32 on awkward inputs as norms/fused.py explains: row moments
 * shifted by the row's first value, LN/BN statistics pooled from the rows' by the law of total variance, and
 * output and input gradient centred on each row's mean, (x - mean_row) * A + B. */

/* Rows r = (sample i, channel j), r = i * c + j, of M values each: x is (N, C, M) contiguous, or with `nhwc`
 * (N, M, C) contiguous (a channels_last (N, C, H, W) tensor), where a row's values lie C apart; there the loops run
 * along the channels, which are contiguous and vectorize. */

/* Per row: mean and biased variance over its M values, from sums of x - (the row's first value), so that a large
 * mean cancels in no sum. */
static void FN(row_moments)(const scalar_t *x, int64_t n, int64_t c, int64_t m, int nhwc, double *mean, double *var,
                            int threads) {
    if (nhwc) {
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double *s = mean + i * c, *ss = var + i * c, *k = malloc(sizeof(double) * c);
            const scalar_t *first = x + i * m * c;
            for (int64_t j = 0; j < c; j++) s[j] = ss[j] = 0, k[j] = first[j];
            for (int64_t p = 0; p < m; p++) {
                const scalar_t *row = x + (i * m + p) * c;
#pragma omp simd
                for (int64_t j = 0; j < c; j++) {
                    double v = row[j] - k[j];
                    s[j] += v;
                    ss[j] += v * v;
                }
            }
            for (int64_t j = 0; j < c; j++) {
                const double d = s[j] / m;
                s[j] = k[j] + d;
                ss[j] = fmax(ss[j] / m - d * d, 0.0);
            }
            free(k);
        }
        return;
    }
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
    for (int64_t r = 0; r < n * c; r++) {
        const scalar_t *p = x + r * m;
        const double k = p[0];
        double s = 0, ss = 0;
#pragma omp simd reduction(+ : s, ss)
        for (int64_t i = 0; i < m; i++) {
            double v = p[i] - k;
            s += v;
            ss += v * v;
        }
        mean[r] = k + s / m;
        var[r] = fmax(ss / m - (s / m) * (s / m), 0.0);
    }
}

/* Per row: sum of g and of g * (x - center). */
static void FN(grad_sums)(const scalar_t *g, const scalar_t *x, const double *center, int64_t n, int64_t c,
                          int64_t m, int nhwc, double *sum_g, double *sum_gx, int threads) {
    if (nhwc) {
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double *s = sum_g + i * c, *sx = sum_gx + i * c;
            const double *mu = center + i * c;
            for (int64_t j = 0; j < c; j++) s[j] = sx[j] = 0;
            for (int64_t p = 0; p < m; p++) {
                const scalar_t *gp = g + (i * m + p) * c, *xp = x + (i * m + p) * c;
#pragma omp simd
                for (int64_t j = 0; j < c; j++) {
                    double gi = gp[j];
                    s[j] += gi;
                    sx[j] += gi * (xp[j] - mu[j]);
                }
            }
        }
        return;
    }
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
    for (int64_t r = 0; r < n * c; r++) {
        const scalar_t *gp = g + r * m, *xp = x + r * m;
        double mu = center[r], s = 0, sx = 0;
#pragma omp simd reduction(+ : s, sx)
        for (int64_t i = 0; i < m; i++) {
            double gi = gp[i];
            s += gi;
            sx += gi * (xp[i] - mu);
        }
        sum_g[r] = s;
        sum_gx[r] = sx;
    }
}

/* out = u * a + (v - center) * b + c per row (u may be NULL: out = (v - center) * b + c). The center is rounded
 * to scalar_t, where v - center is exact for v near it, and the rounding is moved into c (in double). */
static void FN(centred_rows)(const scalar_t *u, const double *a, const scalar_t *v, const double *center,
                             const double *b, const double *c, int64_t n, int64_t ch, int64_t m, int nhwc,
                             scalar_t *out, int threads) {
    const int64_t nc = n * ch;
    scalar_t *as = malloc(sizeof(scalar_t) * 4 * nc), *bs = as + nc, *cs = bs + nc, *ks = cs + nc;
    for (int64_t r = 0; r < nc; r++) { /* the coefficients in scalar_t once, so that the inner loops vectorize */
        ks[r] = (scalar_t)center[r];
        as[r] = u == NULL ? 0 : (scalar_t)a[r];
        bs[r] = (scalar_t)b[r];
        cs[r] = (scalar_t)(c[r] - (center[r] - (double)ks[r]) * b[r]);
    }
    if (nhwc) {
#pragma omp parallel for num_threads(threads) if (n * ch * m > GRAIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const scalar_t *ar = as + i * ch, *br = bs + i * ch, *cr = cs + i * ch, *kr = ks + i * ch;
            for (int64_t p = 0; p < m; p++) {
                const int64_t at = (i * m + p) * ch;
                const scalar_t *vp = v + at;
                scalar_t *op = out + at;
                if (u == NULL) {
#pragma omp simd
                    for (int64_t j = 0; j < ch; j++) op[j] = (vp[j] - kr[j]) * br[j] + cr[j];
                } else {
                    const scalar_t *up = u + at;
#pragma omp simd
                    for (int64_t j = 0; j < ch; j++) op[j] = up[j] * ar[j] + (vp[j] - kr[j]) * br[j] + cr[j];
                }
            }
        }
    } else {
#pragma omp parallel for num_threads(threads) if (n * ch * m > GRAIN) schedule(static)
        for (int64_t r = 0; r < nc; r++) {
            const scalar_t *vp = v + r * m;
            scalar_t *op = out + r * m;
            const scalar_t ar = as[r], br = bs[r], cr = cs[r], kr = ks[r];
            if (u == NULL) {
#pragma omp simd
                for (int64_t i = 0; i < m; i++) op[i] = (vp[i] - kr) * br + cr;
            } else {
                const scalar_t *up = u + r * m;
#pragma omp simd
                for (int64_t i = 0; i < m; i++) op[i] = up[i] * ar + (vp[i] - kr) * br + cr;
            }
        }
    }
    free(as);
}

/* Pooled (mean, biased variance) of `count` rows, `stride` apart from `first`, by the law of total variance. */
static void FN(pooled)(const double *mean, const double *var, int64_t first, int64_t stride, int64_t count,
                       double *pooled_mean, double *pooled_var) {
    double s = 0, ss = 0;
    for (int64_t q = 0; q < count; q++) s += mean[first + q * stride];
    s /= count;
    for (int64_t q = 0; q < count; q++) {
        const double d = mean[first + q * stride] - s;
        ss += var[first + q * stride] + d * d;
    }
    *pooled_mean = s;
    *pooled_var = ss / count;
}

/* BN's (mean, biased variance) of channel j: the running ones, or pooled over the batch's rows, which then update
 * the running ones as F.batch_norm does: running = (1 - momentum) running + momentum batch, the variance times
 * `unbias` (count / (count - 1) for torch's unbiased running variance, 1 for a biased one). */
static void FN(bn_stats)(const double *row_mean, const double *row_var, scalar_t *running_mean, scalar_t *running_var,
                         int64_t n, int64_t c, int64_t j, int batch_stats, double momentum, double unbias,
                         double *mean, double *var) {
    if (!batch_stats) {
        *mean = running_mean[j];
        *var = running_var[j];
        return;
    }
    FN(pooled)(row_mean, row_var, j, c, n, mean, var);
    running_mean[j] = (scalar_t)(running_mean[j] + momentum * (*mean - running_mean[j]));
    running_var[j] = (scalar_t)(running_var[j] + momentum * (*var * unbias - running_var[j]));
}

/* Batch-Instance Norm, y = sum_k c_k (x - mean_k) + beta over k = BN, IN with c_k = w g_k s_k, computed as
 * (x - mean_in) A + B with A = sum_k c_k, B = beta + c_bn (mean_in - mean_bn). stats (2, 2, N, C): kinds (BN, IN);
 * scale: A. With batch statistics the running ones are updated (see bn_stats) and `tracked` (num_batches_tracked)
 * counts. */
void FN(bin_forward)(const scalar_t *x, const scalar_t *gate, const scalar_t *weight, const scalar_t *bias,
                     scalar_t *running_mean, scalar_t *running_var, int64_t *tracked, int64_t n, int64_t c, int64_t m,
                     int nhwc, double eps, int batch_stats, double momentum, scalar_t *y, double *stats,
                     scalar_t *scale, int threads) {
    const double unbias = n * m > 1 ? (double)(n * m) / (n * m - 1) : 1.0;
    const int64_t nc = n * c;
    double *m1 = malloc(sizeof(double) * 4 * nc), *m2 = m1 + nc, *a = m2 + nc, *b = a + nc;
    FN(row_moments)(x, n, c, m, nhwc, m1, m2, threads);
    for (int64_t j = 0; j < c; j++) {
        double mean_bn, var_bn;
        FN(bn_stats)(m1, m2, running_mean, running_var, n, c, j, batch_stats, momentum, unbias, &mean_bn, &var_bn);
        const double rho = gate[j], w = weight[j], p_bn = rho / sqrt(var_bn + eps);
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = i * c + j;
            const double p_in = (1 - rho) / sqrt(m2[r] + eps);
            a[r] = w * (p_bn + p_in);
            b[r] = bias[j] + w * p_bn * (m1[r] - mean_bn);
            scale[r] = (scalar_t)a[r];
            stats[r] = mean_bn;
            stats[nc + r] = m1[r];
            stats[2 * nc + r] = var_bn;
            stats[3 * nc + r] = m2[r];
        }
    }
    if (batch_stats) *tracked += 1;
    FN(centred_rows)(NULL, NULL, x, m1, a, b, n, c, m, nhwc, y, threads);
    free(m1);
}

/* Its backward: per (sample, channel) the sums of g and g (x - mean_in), the gradients of each kind's statistics
 * (mean: -w p_k dB; variance: -w p_k s_k st_k / 2, st_k = s_k sum g (x - mean_k)) carried to the rows' mean and
 * variance (BN's pooled over the batch when they are batch statistics: d mean / N + 2 d var (mean_row - mean_bn) / N
 * and d var / N), then dx = g A + (x - mean_row) 2 d var_row / M + d mean_row / M. dx may be NULL. */
void FN(bin_backward)(const scalar_t *grad, const scalar_t *x, const scalar_t *gate, const scalar_t *weight,
                      const double *stats, const scalar_t *scale, int64_t n, int64_t c, int64_t m, int nhwc,
                      double eps, int batch_stats, scalar_t *dx, scalar_t *d_gate, scalar_t *d_weight, scalar_t *d_bias,
                      int threads) {
    const int64_t nc = n * c;
    double *db = malloc(sizeof(double) * 5 * nc), *t = db + nc, *a = t + nc, *e1 = a + nc, *e2 = e1 + nc;
    const double *mean_in = stats + nc;
    FN(grad_sums)(grad, x, mean_in, n, c, m, nhwc, db, t, threads);
    for (int64_t j = 0; j < c; j++) {
        const double rho = gate[j], w = weight[j], mean_bn = stats[j], s_bn = 1 / sqrt(stats[2 * nc + j] + eps);
        double u_bn = 0, u_in = 0, sum_db = 0, dm_bn = 0, dv_bn = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = i * c + j;
            const double s_in = 1 / sqrt(stats[3 * nc + r] + eps);
            const double st_bn = s_bn * (t[r] + db[r] * (mean_in[r] - mean_bn)), st_in = s_in * t[r];
            const double p_bn = rho * s_bn, p_in = (1 - rho) * s_in;
            u_bn += st_bn;
            u_in += st_in;
            sum_db += db[r];
            dm_bn += -w * p_bn * db[r];
            dv_bn += -0.5 * w * p_bn * s_bn * st_bn;
            e1[r] = -w * p_in * db[r];              /* d mean_row */
            e2[r] = -0.5 * w * p_in * s_in * st_in; /* d var_row */
        }
        d_weight[j] = (scalar_t)(rho * u_bn + (1 - rho) * u_in);
        d_gate[j] = (scalar_t)(w * (u_bn - u_in));
        d_bias[j] = (scalar_t)sum_db;
        for (int64_t i = 0; batch_stats && i < n; i++) {
            const int64_t r = i * c + j;
            e1[r] += (dm_bn + 2 * dv_bn * (mean_in[r] - mean_bn)) / n;
            e2[r] += dv_bn / n;
        }
    }
    if (dx != NULL) {
        for (int64_t r = 0; r < nc; r++) {
            a[r] = scale[r];
            e2[r] *= 2.0 / m;
            e1[r] /= m;
        }
        FN(centred_rows)(grad, a, x, mean_in, e2, e1, n, c, m, nhwc, dx, threads);
    }
    free(db);
}

/* softmax of k logits into out. */
static void FN(softmax)(const scalar_t *logits, int k, double *out) {
    double top = logits[0], total = 0;
    for (int i = 1; i < k; i++) top = fmax(top, logits[i]);
    for (int i = 0; i < k; i++) total += out[i] = exp(logits[i] - top);
    for (int i = 0; i < k; i++) out[i] /= total;
}

/* Switchable Norm (Eq. 3): mean = sum_k a_k mean_k, var = sum_k b_k var_k over the kinds (IN if has_in, LN, BN),
 * a, b = softmax of the logits; y = (x - mean_row) A + B, A = w / sqrt(var + eps), B = beta + (mean_row - mean) A.
 * stats (2, K, N, C); mixed (3, N, C): the mixed mean, 1 / sqrt(var + eps) and the row's mean. With batch
 * statistics the running ones (biased variance) are updated with `momentum` (see bn_stats). */
void FN(sn_forward)(const scalar_t *x, const scalar_t *mean_logits, const scalar_t *var_logits,
                    const scalar_t *weight, const scalar_t *bias, scalar_t *running_mean, scalar_t *running_var,
                    int64_t n, int64_t c, int64_t m, int nhwc, double eps, int batch_stats, double momentum,
                    int has_in, scalar_t *y, double *stats, double *mixed, int threads) {
    const int64_t nc = n * c;
    const int k = 2 + has_in;
    double wa[3], wb[3];
    FN(softmax)(mean_logits, k, wa);
    FN(softmax)(var_logits, k, wb);
    double *m1 = malloc(sizeof(double) * (4 * nc + 2 * n + 2 * c)), *m2 = m1 + nc, *a = m2 + nc, *b = a + nc;
    double *ln_mean = b + nc, *ln_var = ln_mean + n, *bn_mean = ln_var + n, *bn_var = bn_mean + c;
    FN(row_moments)(x, n, c, m, nhwc, m1, m2, threads);
    for (int64_t i = 0; i < n; i++) FN(pooled)(m1, m2, i * c, 1, c, &ln_mean[i], &ln_var[i]);
    for (int64_t j = 0; j < c; j++)
        FN(bn_stats)(m1, m2, running_mean, running_var, n, c, j, batch_stats, momentum, 1.0, &bn_mean[j], &bn_var[j]);
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        double means[3] = {ln_mean[i], bn_mean[j], 0}, vars[3] = {ln_var[i], bn_var[j], 0};
        if (has_in) {
            means[2] = means[1], means[1] = means[0], means[0] = m1[r];
            vars[2] = vars[1], vars[1] = vars[0], vars[0] = m2[r];
        }
        double mean = 0, var = 0;
        for (int q = 0; q < k; q++) {
            mean += wa[q] * means[q];
            var += wb[q] * vars[q];
            stats[q * nc + r] = means[q];
            stats[(k + q) * nc + r] = vars[q];
        }
        const double inv_std = 1 / sqrt(var + eps);
        a[r] = weight[j] * inv_std;
        b[r] = bias[j] + (m1[r] - mean) * a[r];
        mixed[r] = mean;
        mixed[nc + r] = inv_std;
        mixed[2 * nc + r] = m1[r];
    }
    FN(centred_rows)(NULL, NULL, x, m1, a, b, n, c, m, nhwc, y, threads);
    free(m1);
}

/* Its backward: u = inv_std * sum g (x - mean); the mixed mean's gradient -A dB and variance's -A inv_std u / 2,
 * the logits' through the mixing and softmax, each kind's statistics' (a_k, b_k times those) carried to the rows'
 * mean and variance (LN's pooled over the sample's channels, BN's over the batch when they are batch statistics),
 * then dx = g A + (x - mean_row) 2 d var_row / M + d mean_row / M. dx may be NULL. */
void FN(sn_backward)(const scalar_t *grad, const scalar_t *x, const scalar_t *mean_logits,
                     const scalar_t *var_logits, const scalar_t *weight, const double *stats,
                     const double *mixed, int64_t n, int64_t c, int64_t m, int nhwc, int batch_stats,
                     int has_in, scalar_t *dx, scalar_t *d_mean_logits, scalar_t *d_var_logits, scalar_t *d_weight,
                     scalar_t *d_bias, int threads) {
    const int64_t nc = n * c;
    const int k = 2 + has_in, ln = has_in, bn = has_in + 1;
    double wa[3], wb[3], ga[3] = {0}, gb[3] = {0};
    FN(softmax)(mean_logits, k, wa);
    FN(softmax)(var_logits, k, wb);
    double *db = calloc(7 * nc + 2 * n + 4 * c, sizeof(double)), *t = db + nc, *a = t + nc;
    double *dm = a + nc, *dv = dm + nc, *e1 = dv + nc, *e2 = e1 + nc, *ln1 = e2 + nc, *ln2 = ln1 + n;
    double *bn1 = ln2 + n, *bn2 = bn1 + c, *dw = bn2 + c, *dbias = dw + c;
    const double *row_mean = mixed + 2 * nc;
    FN(grad_sums)(grad, x, row_mean, n, c, m, nhwc, db, t, threads);
    for (int64_t r = 0; r < nc; r++) {
        const int64_t j = r % c;
        const double inv_std = mixed[nc + r], u = inv_std * (t[r] + db[r] * (row_mean[r] - mixed[r]));
        a[r] = weight[j] * inv_std;
        dw[j] += u;
        dbias[j] += db[r];
        dm[r] = -a[r] * db[r];
        dv[r] = -0.5 * a[r] * inv_std * u;
        for (int q = 0; q < k; q++) {
            ga[q] += stats[q * nc + r] * dm[r];
            gb[q] += stats[(k + q) * nc + r] * dv[r];
        }
    }
    double sa = 0, sb = 0;
    for (int q = 0; q < k; q++) sa += wa[q] * ga[q], sb += wb[q] * gb[q];
    for (int q = 0; q < k; q++) {
        d_mean_logits[q] = (scalar_t)(wa[q] * (ga[q] - sa));
        d_var_logits[q] = (scalar_t)(wb[q] * (gb[q] - sb));
    }
    for (int64_t j = 0; j < c; j++) {
        d_weight[j] = (scalar_t)dw[j];
        d_bias[j] = (scalar_t)dbias[j];
    }
    /* each kind's (mean, variance) gradients a_q dm, b_q dv: IN's per row, LN's and BN's pooled */
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        ln1[i] += wa[ln] * dm[r];
        ln2[i] += wb[ln] * dv[r];
        bn1[j] += wa[bn] * dm[r];
        bn2[j] += wb[bn] * dv[r];
    }
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        double d1 = (has_in ? wa[0] * dm[r] : 0) + (ln1[i] + 2 * ln2[i] * (row_mean[r] - stats[ln * nc + r])) / c;
        double d2 = (has_in ? wb[0] * dv[r] : 0) + ln2[i] / c;
        if (batch_stats) d1 += (bn1[j] + 2 * bn2[j] * (row_mean[r] - stats[bn * nc + r])) / n, d2 += bn2[j] / n;
        e1[r] = d1 / m;
        e2[r] = 2 * d2 / m;
    }
    if (dx != NULL) FN(centred_rows)(grad, a, x, row_mean, e2, e1, n, c, m, nhwc, dx, threads);
    free(db);
}
