/* BIN and SN forward and backward on x (N, C, M), contiguous (or its channels_last form, see below): included by
 * native.c once per scalar type (scalar_t; FN(name) gives the type's suffix). Statistics and their gradients are
 * accumulated in double. The formulas are those of BatchInstanceNormFunction and SwitchableNormFunction
 * (batch_instance.py, switchable.py), which the tests check against the papers' equations; stats are stacked
 * (2, K, N, C): means, then biased variances, of each kind k. */

/* Rows r = (sample i, channel j), r = i * c + j, of M values each: x is (N, C, M) contiguous, or with `nhwc`
 * (N, M, C) contiguous (a channels_last (N, C, H, W) tensor), where a row's values lie C apart; there the loops run
 * along the channels, which are contiguous and vectorize. */

/* Per row: E[x] and E[x^2] over its M values. */
static void FN(row_moments)(const scalar_t *x, int64_t n, int64_t c, int64_t m, int nhwc, double *m1, double *m2,
                            int threads) {
    if (nhwc) {
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double *s = m1 + i * c, *ss = m2 + i * c;
            for (int64_t j = 0; j < c; j++) s[j] = ss[j] = 0;
            for (int64_t p = 0; p < m; p++) {
                const scalar_t *row = x + (i * m + p) * c;
#pragma omp simd
                for (int64_t j = 0; j < c; j++) {
                    double v = row[j];
                    s[j] += v;
                    ss[j] += v * v;
                }
            }
            for (int64_t j = 0; j < c; j++) s[j] /= m, ss[j] /= m;
        }
        return;
    }
#pragma omp parallel for num_threads(threads) if (n * c * m > GRAIN) schedule(static)
    for (int64_t r = 0; r < n * c; r++) {
        const scalar_t *p = x + r * m;
        double s = 0, ss = 0;
#pragma omp simd reduction(+ : s, ss)
        for (int64_t i = 0; i < m; i++) {
            double v = p[i];
            s += v;
            ss += v * v;
        }
        m1[r] = s / m;
        m2[r] = ss / m;
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

/* out = a * u + b * v + c per row (v may be NULL: out = a * u + c). */
static void FN(axpby_rows)(const scalar_t *u, const double *a, const scalar_t *v, const double *b, const double *c,
                           int64_t n, int64_t ch, int64_t m, int nhwc, scalar_t *out, int threads) {
    if (nhwc) { /* the (N, C) coefficients in scalar_t once, so that the inner loops along C vectorize */
        const int64_t nc = n * ch;
        scalar_t *as = malloc(sizeof(scalar_t) * 3 * nc), *bs = as + nc, *cs = bs + nc;
        for (int64_t r = 0; r < nc; r++) {
            as[r] = (scalar_t)a[r];
            bs[r] = v == NULL ? 0 : (scalar_t)b[r];
            cs[r] = (scalar_t)c[r];
        }
#pragma omp parallel for num_threads(threads) if (n * ch * m > GRAIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const scalar_t *ar = as + i * ch, *br = bs + i * ch, *cr = cs + i * ch;
            for (int64_t p = 0; p < m; p++) {
                const int64_t at = (i * m + p) * ch;
                const scalar_t *up = u + at;
                scalar_t *op = out + at;
                if (v == NULL) {
#pragma omp simd
                    for (int64_t j = 0; j < ch; j++) op[j] = up[j] * ar[j] + cr[j];
                } else {
                    const scalar_t *vp = v + at;
#pragma omp simd
                    for (int64_t j = 0; j < ch; j++) op[j] = up[j] * ar[j] + vp[j] * br[j] + cr[j];
                }
            }
        }
        free(as);
        return;
    }
#pragma omp parallel for num_threads(threads) if (n * ch * m > GRAIN) schedule(static)
    for (int64_t r = 0; r < n * ch; r++) {
        const scalar_t *up = u + r * m;
        scalar_t *op = out + r * m;
        const scalar_t ar = (scalar_t)a[r], cr = (scalar_t)c[r];
        if (v == NULL) {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) op[i] = up[i] * ar + cr;
        } else {
            const scalar_t *vp = v + r * m;
            const scalar_t br = (scalar_t)b[r];
#pragma omp simd
            for (int64_t i = 0; i < m; i++) op[i] = up[i] * ar + vp[i] * br + cr;
        }
    }
}

/* BN's (mean, biased variance) of channel j: the running ones, or over the batch's rows, which then update the
 * running ones as F.batch_norm does: running = (1 - momentum) running + momentum batch, the variance times
 * `unbias` (count / (count - 1) for torch's unbiased running variance, 1 for a biased one). */
static void FN(bn_stats)(const double *m1, const double *m2, scalar_t *running_mean, scalar_t *running_var,
                         int64_t n, int64_t c, int64_t j, int batch_stats, double momentum, double unbias,
                         double *mean, double *var) {
    if (!batch_stats) {
        *mean = running_mean[j];
        *var = running_var[j];
        return;
    }
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s1 += m1[i * c + j];
        s2 += m2[i * c + j];
    }
    *mean = s1 / n;
    *var = fmax(s2 / n - *mean * *mean, 0.0);
    running_mean[j] = (scalar_t)(running_mean[j] + momentum * (*mean - running_mean[j]));
    running_var[j] = (scalar_t)(running_var[j] + momentum * (*var * unbias - running_var[j]));
}

/* Batch-Instance Norm, y = x * A + B with A = w (rho s_bn + (1 - rho) s_in),
 * B = beta - w (rho s_bn mean_bn + (1 - rho) s_in mean_in). stats (2, 2, N, C): kinds (BN, IN); scale: A.
 * With batch statistics the running ones are updated (see bn_stats) and `tracked` (num_batches_tracked) counts. */
void FN(bin_forward)(const scalar_t *x, const scalar_t *gate, const scalar_t *weight, const scalar_t *bias,
                     scalar_t *running_mean, scalar_t *running_var, int64_t *tracked, int64_t n, int64_t c, int64_t m,
                     int nhwc, double eps, int batch_stats, double momentum, scalar_t *y, scalar_t *stats,
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
            const double var_in = fmax(m2[r] - m1[r] * m1[r], 0.0), p_in = (1 - rho) / sqrt(var_in + eps);
            a[r] = w * (p_bn + p_in);
            b[r] = bias[j] - w * (p_bn * mean_bn + p_in * m1[r]);
            scale[r] = (scalar_t)a[r];
            stats[r] = (scalar_t)mean_bn;
            stats[nc + r] = (scalar_t)m1[r];
            stats[2 * nc + r] = (scalar_t)var_bn;
            stats[3 * nc + r] = (scalar_t)var_in;
        }
    }
    if (batch_stats) *tracked += 1;
    FN(axpby_rows)(x, a, NULL, NULL, b, n, c, m, nhwc, y, threads);
    free(m1);
}

/* Its backward: per (sample, channel) the sums of g and g (x - mean_in), the gradients of each kind's statistics
 * (mean: -w p_k dB; variance: -w p_k s_k st_k / 2, st_k = s_k (dA - dB mean_k)) carried to the raw moments
 * E[x], E[x^2] (BN's averaged over the batch when they are batch statistics), then
 * dx = g A + x (2 dE[x^2] / M) + dE[x] / M. dx may be NULL (no input gradient wanted). */
void FN(bin_backward)(const scalar_t *grad, const scalar_t *x, const scalar_t *gate, const scalar_t *weight,
                      const scalar_t *stats, const scalar_t *scale, int64_t n, int64_t c, int64_t m, int nhwc,
                      double eps, int batch_stats, scalar_t *dx, scalar_t *d_gate, scalar_t *d_weight, scalar_t *d_bias,
                      int threads) {
    const int64_t nc = n * c;
    double *db = malloc(sizeof(double) * 6 * nc), *t = db + nc, *mean_in = t + nc, *a = mean_in + nc,
           *e1 = a + nc, *e2 = e1 + nc;
    for (int64_t r = 0; r < nc; r++) mean_in[r] = stats[nc + r];
    FN(grad_sums)(grad, x, mean_in, n, c, m, nhwc, db, t, threads);
    for (int64_t j = 0; j < c; j++) {
        const double rho = gate[j], w = weight[j], mean_bn = stats[j], s_bn = 1 / sqrt(stats[2 * nc + j] + eps);
        double u_bn = 0, u_in = 0, sum_db = 0, bn1 = 0, bn2 = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = i * c + j;
            const double s_in = 1 / sqrt(stats[3 * nc + r] + eps);
            const double st_bn = s_bn * (t[r] + db[r] * (mean_in[r] - mean_bn)), st_in = s_in * t[r];
            const double p_bn = rho * s_bn, p_in = (1 - rho) * s_in;
            const double dv_bn = -0.5 * w * p_bn * s_bn * st_bn, dv_in = -0.5 * w * p_in * s_in * st_in;
            u_bn += st_bn;
            u_in += st_in;
            sum_db += db[r];
            bn1 += -w * p_bn * db[r] - 2 * mean_bn * dv_bn;
            bn2 += dv_bn;
            e1[r] = -w * p_in * db[r] - 2 * mean_in[r] * dv_in;
            e2[r] = dv_in;
        }
        d_weight[j] = (scalar_t)(rho * u_bn + (1 - rho) * u_in);
        d_gate[j] = (scalar_t)(w * (u_bn - u_in));
        d_bias[j] = (scalar_t)sum_db;
        for (int64_t i = 0; batch_stats && i < n; i++) {
            e1[i * c + j] += bn1 / n;
            e2[i * c + j] += bn2 / n;
        }
    }
    if (dx != NULL) {
        for (int64_t r = 0; r < nc; r++) {
            a[r] = scale[r];
            e2[r] *= 2.0 / m;
            e1[r] /= m;
        }
        FN(axpby_rows)(grad, a, x, e2, e1, n, c, m, nhwc, dx, threads);
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
 * a, b = softmax of the logits; y = x * A + B, A = w / sqrt(var + eps), B = beta - mean A.
 * stats (2, K, N, C); mixed (2, N, C): the mixed mean and 1 / sqrt(var + eps). With batch statistics the
 * running ones (biased variance) are updated with `momentum` (see bn_stats). */
void FN(sn_forward)(const scalar_t *x, const scalar_t *mean_logits, const scalar_t *var_logits,
                    const scalar_t *weight, const scalar_t *bias, scalar_t *running_mean, scalar_t *running_var,
                    int64_t n, int64_t c, int64_t m, int nhwc, double eps, int batch_stats, double momentum,
                    int has_in, scalar_t *y, scalar_t *stats, scalar_t *mixed, int threads) {
    const int64_t nc = n * c;
    const int k = 2 + has_in;
    double wa[3], wb[3];
    FN(softmax)(mean_logits, k, wa);
    FN(softmax)(var_logits, k, wb);
    double *m1 = malloc(sizeof(double) * (4 * nc + 2 * n + 2 * c)), *m2 = m1 + nc, *a = m2 + nc, *b = a + nc;
    double *ln_mean = b + nc, *ln_var = ln_mean + n, *bn_mean = ln_var + n, *bn_var = bn_mean + c;
    FN(row_moments)(x, n, c, m, nhwc, m1, m2, threads);
    for (int64_t i = 0; i < n; i++) {
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < c; j++) {
            s1 += m1[i * c + j];
            s2 += m2[i * c + j];
        }
        ln_mean[i] = s1 / c;
        ln_var[i] = fmax(s2 / c - ln_mean[i] * ln_mean[i], 0.0);
    }
    for (int64_t j = 0; j < c; j++)
        FN(bn_stats)(m1, m2, running_mean, running_var, n, c, j, batch_stats, momentum, 1.0, &bn_mean[j], &bn_var[j]);
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        double means[3] = {ln_mean[i], bn_mean[j], 0}, vars[3] = {ln_var[i], bn_var[j], 0};
        if (has_in) {
            means[2] = means[1], means[1] = means[0], means[0] = m1[r];
            vars[2] = vars[1], vars[1] = vars[0], vars[0] = fmax(m2[r] - m1[r] * m1[r], 0.0);
        }
        double mean = 0, var = 0;
        for (int q = 0; q < k; q++) {
            mean += wa[q] * means[q];
            var += wb[q] * vars[q];
            stats[q * nc + r] = (scalar_t)means[q];
            stats[(k + q) * nc + r] = (scalar_t)vars[q];
        }
        const double inv_std = 1 / sqrt(var + eps);
        a[r] = weight[j] * inv_std;
        b[r] = bias[j] - mean * a[r];
        mixed[r] = (scalar_t)mean;
        mixed[nc + r] = (scalar_t)inv_std;
    }
    FN(axpby_rows)(x, a, NULL, NULL, b, n, c, m, nhwc, y, threads);
    free(m1);
}

/* Its backward: u = inv_std * sum g (x - mean); the mixed mean's gradient -A dB and variance's -A inv_std u / 2,
 * the logits' through the mixing and softmax, each kind's statistics' (a_k, b_k times those) carried to the raw
 * moments E[x], E[x^2] (LN's averaged over the sample's channels, BN's over the batch when they are batch
 * statistics), then dx = g A + x (2 dE[x^2] / M) + dE[x] / M. dx may be NULL. */
void FN(sn_backward)(const scalar_t *grad, const scalar_t *x, const scalar_t *mean_logits,
                     const scalar_t *var_logits, const scalar_t *weight, const scalar_t *stats,
                     const scalar_t *mixed, int64_t n, int64_t c, int64_t m, int nhwc, int batch_stats,
                     int has_in, scalar_t *dx, scalar_t *d_mean_logits, scalar_t *d_var_logits, scalar_t *d_weight,
                     scalar_t *d_bias, int threads) {
    const int64_t nc = n * c;
    const int k = 2 + has_in, ln = has_in, bn = has_in + 1;
    double wa[3], wb[3], ga[3] = {0}, gb[3] = {0};
    FN(softmax)(mean_logits, k, wa);
    FN(softmax)(var_logits, k, wb);
    double *db = calloc(8 * nc + 2 * n + 4 * c, sizeof(double)), *t = db + nc, *mean = t + nc, *a = mean + nc;
    double *dm = a + nc, *dv = dm + nc, *e1 = dv + nc, *e2 = e1 + nc, *ln1 = e2 + nc, *ln2 = ln1 + n;
    double *bn1 = ln2 + n, *bn2 = bn1 + c, *dw = bn2 + c, *dbias = dw + c;
    for (int64_t r = 0; r < nc; r++) mean[r] = mixed[r];
    FN(grad_sums)(grad, x, mean, n, c, m, nhwc, db, t, threads);
    for (int64_t r = 0; r < nc; r++) {
        const int64_t j = r % c;
        const double inv_std = mixed[nc + r], u = inv_std * t[r];
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
    /* per kind q: dE[x] = a_q dm - 2 mean_q b_q dv, dE[x^2] = b_q dv */
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        ln1[i] += wa[ln] * dm[r] - 2 * stats[ln * nc + r] * wb[ln] * dv[r];
        ln2[i] += wb[ln] * dv[r];
        bn1[j] += wa[bn] * dm[r] - 2 * stats[bn * nc + r] * wb[bn] * dv[r];
        bn2[j] += wb[bn] * dv[r];
        e1[r] = has_in ? wa[0] * dm[r] - 2 * stats[r] * wb[0] * dv[r] : 0;
    }
    for (int64_t r = 0; r < nc; r++) {
        const int64_t i = r / c, j = r % c;
        double d1 = e1[r] + ln1[i] / c, d2 = (has_in ? wb[0] * dv[r] : 0) + ln2[i] / c;
        if (batch_stats) d1 += bn1[j] / n, d2 += bn2[j] / n;
        e1[r] = d1 / m;
        e2[r] = 2 * d2 / m;
    }
    if (dx != NULL) FN(axpby_rows)(grad, a, x, e2, e1, n, c, m, nhwc, dx, threads);
    free(db);
}
