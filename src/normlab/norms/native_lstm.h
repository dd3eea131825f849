/* One step of the normalized LSTM (NormLSTM in models/lstm.py; Ba et al. 2016 Eq. 20-22, Cooijmans et al. 2016
 * Eq. 6-8) with LN or stepwise BN, forward and backward: included by native.c once per scalar type.
 *   gates = xw + N_h(hw);  i, f, o = sigmoid(gates[:3H]), g = tanh(gates[3H:]);  c = f c_prev + i g;
 *   h = o tanh(N_c(c)),  N(z) = w zhat + b.
 * All (N, F) arrays are row-major; xw's rows are `xw_stride` apart (a step of the (N, T, 4H) input term). */

/* zhat = (z - mean) * inv over the batch per feature (BN) or over the features per sample (LN); BN in eval
 * uses the running statistics, BN in training updates them (F.batch_norm's momentum and unbiased variance).
 * inv: (F) for BN, (N) for LN. */
static void FN(seq_norm_forward)(const scalar_t *z, int64_t n, int64_t f, int batch_norm, int batch_stats,
                                 scalar_t *running_mean, scalar_t *running_var, double momentum, double eps,
                                 scalar_t *zhat, scalar_t *inv) {
    if (batch_norm) {
        double *mean = calloc(2 * f, sizeof(double)), *var = mean + f;
        if (batch_stats) {
            for (int64_t r = 0; r < n; r++)
                for (int64_t k = 0; k < f; k++) mean[k] += z[r * f + k];
            for (int64_t k = 0; k < f; k++) mean[k] /= n;
            for (int64_t r = 0; r < n; r++)
                for (int64_t k = 0; k < f; k++) {
                    const double d = z[r * f + k] - mean[k];
                    var[k] += d * d;
                }
            for (int64_t k = 0; k < f; k++) {
                var[k] /= n;
                running_mean[k] = (scalar_t)(running_mean[k] + momentum * (mean[k] - running_mean[k]));
                const double unbiased = n > 1 ? var[k] * n / (n - 1) : var[k];
                running_var[k] = (scalar_t)(running_var[k] + momentum * (unbiased - running_var[k]));
            }
        } else {
            for (int64_t k = 0; k < f; k++) mean[k] = running_mean[k], var[k] = running_var[k];
        }
        for (int64_t k = 0; k < f; k++) inv[k] = (scalar_t)(1 / sqrt(var[k] + eps));
        for (int64_t r = 0; r < n; r++)
            for (int64_t k = 0; k < f; k++) zhat[r * f + k] = (scalar_t)((z[r * f + k] - mean[k]) * inv[k]);
        free(mean);
        return;
    }
    for (int64_t r = 0; r < n; r++) {
        const scalar_t *zr = z + r * f;
        double mean = 0, var = 0;
#pragma omp simd reduction(+ : mean)
        for (int64_t k = 0; k < f; k++) mean += zr[k];
        mean /= f;
#pragma omp simd reduction(+ : var)
        for (int64_t k = 0; k < f; k++) var += (zr[k] - mean) * (zr[k] - mean);
        const double s = 1 / sqrt(var / f + eps);
        inv[r] = (scalar_t)s;
        for (int64_t k = 0; k < f; k++) zhat[r * f + k] = (scalar_t)((zr[k] - mean) * s);
    }
}

/* Backward of y = w zhat + b with zhat as above, for upstream dy: dw, db (sums over the batch) and dz =
 * inv (dzhat - mean(dzhat) - zhat mean(dzhat zhat)) over the statistics' group, or inv dzhat for running ones. */
static void FN(seq_norm_backward)(const scalar_t *dy, const scalar_t *zhat, const scalar_t *inv, const scalar_t *w,
                                  int64_t n, int64_t f, int batch_norm, int batch_stats, scalar_t *dz,
                                  scalar_t *dw, scalar_t *db) {
    double *sum_dy = calloc(4 * f, sizeof(double)), *sum_dyz = sum_dy + f, *m1 = sum_dyz + f, *m2 = m1 + f;
    for (int64_t r = 0; r < n; r++)
        for (int64_t k = 0; k < f; k++) {
            const double g = dy[r * f + k];
            sum_dy[k] += g;
            sum_dyz[k] += g * zhat[r * f + k];
        }
    for (int64_t k = 0; k < f; k++) {
        dw[k] = (scalar_t)sum_dyz[k];
        db[k] = (scalar_t)sum_dy[k];
        m1[k] = w[k] * sum_dy[k] / n;  /* BN: the batch means of dzhat and dzhat zhat per feature */
        m2[k] = w[k] * sum_dyz[k] / n;
    }
    for (int64_t r = 0; r < n; r++) {
        const scalar_t *gr = dy + r * f, *zr = zhat + r * f;
        scalar_t *out = dz + r * f;
        if (batch_norm) {
            for (int64_t k = 0; k < f; k++) {
                const double dzhat = gr[k] * w[k];
                out[k] = (scalar_t)(batch_stats ? inv[k] * (dzhat - m1[k] - zr[k] * m2[k]) : inv[k] * dzhat);
            }
            continue;
        }
        double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t k = 0; k < f; k++) {
            const double dzhat = gr[k] * w[k];
            s1 += dzhat;
            s2 += dzhat * zr[k];
        }
        s1 /= f, s2 /= f;
        for (int64_t k = 0; k < f; k++) out[k] = (scalar_t)(inv[r] * (gr[k] * w[k] - s1 - zr[k] * s2));
    }
    free(sum_dy);
}

/* The step's forward in two calls with one torch sigmoid between them (vectorized; libm's scalar expf and
 * tanhf cost 3-12 ns each, several times the step's other work), tanh(g) taken as 2 sigmoid(2g) - 1:
 * lstm_gates_forward: gates = xw + N_h(hw) into act (N, 4H), its last H columns (g) doubled, and hw_hat,
 * inv_h for the backward; (torch: act = sigmoid(act));
 * lstm_cell_forward: g = 2 act - 1 in place, c = f c_prev + i g, and N_c(c) into norm_c (N, H) (whose tanh
 * torch takes), with c_hat and inv_c for the backward. */
void FN(lstm_gates_forward)(const scalar_t *xw, int64_t xw_stride, const scalar_t *hw, const scalar_t *w_h,
                            const scalar_t *b_h, scalar_t *running_mean, scalar_t *running_var, int64_t n,
                            int64_t hidden, int batch_norm, int batch_stats, double momentum, double eps,
                            scalar_t *act, scalar_t *hw_hat, scalar_t *inv_h, int threads) {
    (void)threads; /* a step's (N, 4H) arrays are below the grain size: one thread */
    const int64_t f = 4 * hidden;
    FN(seq_norm_forward)(hw, n, f, batch_norm, batch_stats, running_mean, running_var, momentum, eps, hw_hat, inv_h);
    for (int64_t r = 0; r < n; r++) {
        const scalar_t *xr = xw + r * xw_stride, *zr = hw_hat + r * f;
        scalar_t *ar = act + r * f;
#pragma omp simd
        for (int64_t k = 0; k < f; k++) ar[k] = (xr[k] + w_h[k] * zr[k] + b_h[k]) * (k < 3 * hidden ? 1 : 2);
    }
}

void FN(lstm_cell_forward)(scalar_t *act, const scalar_t *c_prev, const scalar_t *w_c, const scalar_t *b_c,
                           scalar_t *running_mean, scalar_t *running_var, int64_t n, int64_t hidden, int batch_norm,
                           int batch_stats, double momentum, double eps, scalar_t *c, scalar_t *norm_c,
                           scalar_t *c_hat, scalar_t *inv_c, int threads) {
    (void)threads;
    for (int64_t r = 0; r < n; r++) {
        scalar_t *ar = act + r * 4 * hidden;
        const scalar_t *cp = c_prev + r * hidden;
        scalar_t *cr = c + r * hidden;
#pragma omp simd
        for (int64_t j = 0; j < hidden; j++) {
            ar[3 * hidden + j] = 2 * ar[3 * hidden + j] - 1;
            cr[j] = ar[hidden + j] * cp[j] + ar[j] * ar[3 * hidden + j];
        }
    }
    FN(seq_norm_forward)(c, n, hidden, batch_norm, batch_stats, running_mean, running_var, momentum, eps, c_hat, inv_c);
    for (int64_t r = 0; r < n; r++)
#pragma omp simd
        for (int64_t j = 0; j < hidden; j++) norm_c[r * hidden + j] = w_c[j] * c_hat[r * hidden + j] + b_c[j];
}

/* Its backward for upstream dh and dc (dc may be NULL: c is not used further): d_xw = d_gates (before the
 * nonlinearities), d_hw through N_h, d_c_prev, and the four norm parameters' gradients. */
void FN(lstm_step_backward)(const scalar_t *dh, const scalar_t *dc, const scalar_t *c_prev, const scalar_t *w_h,
                            const scalar_t *w_c, const scalar_t *act, const scalar_t *hw_hat, const scalar_t *c_hat,
                            const scalar_t *tanh_c, const scalar_t *inv_h, const scalar_t *inv_c, int64_t n,
                            int64_t hidden, int batch_norm, int batch_stats, scalar_t *d_xw, scalar_t *d_hw,
                            scalar_t *d_c_prev, scalar_t *d_w_h, scalar_t *d_b_h, scalar_t *d_w_c, scalar_t *d_b_c,
                            int threads) {
    (void)threads;
    const int64_t f = 4 * hidden, nh = n * hidden;
    scalar_t *d_norm_c = calloc(2 * nh, sizeof(scalar_t)), *d_c = d_norm_c + nh;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < hidden; j++) {  /* h = o tanh(N_c(c)) */
            const int64_t q = r * hidden + j;
            const double t = tanh_c[q];
            d_norm_c[q] = (scalar_t)(dh[q] * act[r * f + 2 * hidden + j] * (1 - t * t));
            d_xw[r * f + 2 * hidden + j] = (scalar_t)(dh[q] * t);  /* d o, before its sigmoid's derivative */
        }
    FN(seq_norm_backward)(d_norm_c, c_hat, inv_c, w_c, n, hidden, batch_norm, batch_stats, d_c, d_w_c, d_b_c);
    for (int64_t r = 0; r < n; r++) {
        const scalar_t *ar = act + r * f, *cp = c_prev + r * hidden, *dcr = d_c + r * hidden;
        scalar_t *dr = d_xw + r * f, *dcp = d_c_prev + r * hidden;
        for (int64_t j = 0; j < hidden; j++) {  /* c = f c_prev + i g, then through sigmoid (i, f, o), tanh (g) */
            const double dcq = dcr[j] + (dc != NULL ? dc[r * hidden + j] : 0);
            const double i = ar[j], fg = ar[hidden + j], o = ar[2 * hidden + j], g = ar[3 * hidden + j];
            dr[j] = (scalar_t)(dcq * g * i * (1 - i));
            dr[hidden + j] = (scalar_t)(dcq * cp[j] * fg * (1 - fg));
            dr[2 * hidden + j] = (scalar_t)(dr[2 * hidden + j] * o * (1 - o));
            dr[3 * hidden + j] = (scalar_t)(dcq * i * (1 - g * g));
            dcp[j] = (scalar_t)(dcq * fg);
        }
    }
    FN(seq_norm_backward)(d_xw, hw_hat, inv_h, w_h, n, f, batch_norm, batch_stats, d_hw, d_w_h, d_b_h);
    free(d_norm_c);
}
