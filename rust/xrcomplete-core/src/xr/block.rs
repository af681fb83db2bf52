//! Dual coordinate descent for the linear models of up to [`LANES`] sibling nodes at once.
//!
//! Siblings are trained on the same rows (their parent's positives) with different signs. One
//! pass over a row serves every sibling of the block: the weights are stored feature-major,
//! `LANES` values per feature, so the dot products and updates of all lanes are one contiguous,
//! vectorisable loop. Each lane is its own problem, with its own duals and its own stopping test,
//! frozen once met: LIBLINEAR's `L2R_L2LOSS_SVC_DUAL` (without shrinking; stop at
//! `max PG - min PG <= eps`) or `L2R_LR_DUAL` (stop at `max |gradient| <= eps`).

use super::params::{Loss, TrainParams};
use crate::sparse::{RowBuf, SparseRows};

/// Problems solved together.
pub(crate) const LANES: usize = 8;

/// One node's result: sorted feature ids, their weights, the bias weight.
pub(crate) type Column = (Vec<u32>, Vec<f32>, f32);

/// Per-thread state: dense feature-major weights (`n_features x LANES`) and the marks of the
/// features a block touches, so that only those are read back and reset.
pub(crate) struct BlockSolver {
    w: Vec<[f32; LANES]>,
    stamp: Vec<u32>,
    round: u32,
    touched: Vec<u32>,
    /// The duals (for the logistic loss, the first of each pair; the second is `C - alpha`).
    alpha: Vec<[f64; LANES]>,
    sign: Vec<[f32; LANES]>,
    order: Vec<u32>,
    /// Where a row not stored whole is read into.
    row: RowBuf,
}

impl BlockSolver {
    pub(crate) fn new(n_features: usize) -> Self {
        BlockSolver {
            w: vec![[0.0; LANES]; n_features],
            stamp: vec![0; n_features],
            round: 0,
            touched: Vec::new(),
            alpha: Vec::new(),
            sign: Vec::new(),
            order: Vec::new(),
            row: RowBuf::default(),
        }
    }

    /// Trains the nodes whose positive rows are `positives[k]` (sorted, within `rows`), for
    /// `k < positives.len() <= LANES`, on the sorted `rows`.
    pub(crate) fn solve(
        &mut self,
        x: &dyn SparseRows,
        sq_norms: &[f32],
        rows: &[u32],
        positives: &[&[u32]],
        p: &TrainParams,
        seed: u64,
    ) -> Vec<Column> {
        let width = positives.len();
        debug_assert!(width <= LANES);
        let n = rows.len();
        if n == 0 {
            return vec![(Vec::new(), Vec::new(), 0.0); width];
        }
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            self.stamp.fill(0);
            self.round = 1;
        }
        self.touched.clear();
        self.sign.clear();
        self.sign.resize(n, [0.0; LANES]);
        let mut cursor = [0usize; LANES];
        for (i, &r) in rows.iter().enumerate() {
            for k in 0..width {
                let pos = positives[k];
                while cursor[k] < pos.len() && pos[cursor[k]] < r {
                    cursor[k] += 1;
                }
                let positive = cursor[k] < pos.len() && pos[cursor[k]] == r;
                self.sign[i][k] = if positive { 1.0 } else { -1.0 };
            }
            for &f in x.row_in(r as usize, &mut self.row).0 {
                if self.stamp[f as usize] != self.round {
                    self.stamp[f as usize] = self.round;
                    self.touched.push(f);
                }
            }
        }
        self.order.clear();
        self.order.extend(0..n as u32);

        let bias = p.bias as f32;
        let (cp, cn) = (p.cp, p.cn);
        // The L2 loss adds 1 / (2C) to the diagonal (no upper bound on alpha).
        let (diag_pos, diag_neg) = (0.5 / p.cp as f32, 0.5 / p.cn as f32);
        let mut wb = [0f32; LANES];
        self.alpha.clear();
        self.alpha.resize(n, [0.0; LANES]);
        if p.loss == Loss::Logistic {
            // LIBLINEAR's start: alpha = min(0.001 C, 1e-8), and w = sum of y alpha x.
            for (i, &r) in rows.iter().enumerate() {
                let mut step = [0f32; LANES];
                let lanes = self.alpha[i].iter_mut().zip(&self.sign[i]).zip(&mut step);
                for ((alpha, &y), step) in lanes.take(width) {
                    let c = if y > 0.0 { cp } else { cn };
                    *alpha = (0.001 * c).min(1e-8);
                    *step = (y as f64 * *alpha) as f32;
                }
                let (cols, vals) = x.row_in(r as usize, &mut self.row);
                add_step(&mut self.w, &mut wb, cols, vals, &step, bias);
            }
        }
        let mut inner_eps = [1e-2f64; LANES];
        let inner_eps_min = p.eps.min(1e-8);
        // Lanes past `width` are padding: done from the start, never updated.
        let mut done = [false; LANES];
        done[width..].iter_mut().for_each(|d| *d = true);
        let mut rng = seed ^ 0x9E37_79B9_7F4A_7C15;
        for _ in 0..p.max_iter {
            for i in (1..n).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                self.order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let mut pg_max = [f32::NEG_INFINITY; LANES];
            let mut pg_min = [f32::INFINITY; LANES];
            let mut newton_steps = [0usize; LANES];
            for &i in &self.order {
                let i = i as usize;
                let r = rows[i] as usize;
                let (cols, vals) = x.row_in(r, &mut self.row);
                let mut wx = [0f32; LANES];
                for k in 0..LANES {
                    wx[k] = wb[k] * bias;
                }
                for (&f, &v) in cols.iter().zip(vals) {
                    let wf = &self.w[f as usize];
                    for k in 0..LANES {
                        wx[k] += wf[k] * v;
                    }
                }
                let mut step = [0f32; LANES];
                let mut any = false;
                let (alpha, sign) = (&mut self.alpha[i], &self.sign[i]);
                for k in 0..LANES {
                    if done[k] {
                        continue;
                    }
                    let y = sign[k];
                    match p.loss {
                        Loss::SquaredHinge => {
                            let diag = if y > 0.0 { diag_pos } else { diag_neg };
                            let a = alpha[k] as f32;
                            let g = y * wx[k] - 1.0 + diag * a;
                            let pg = if a == 0.0 { g.min(0.0) } else { g };
                            pg_max[k] = pg_max[k].max(pg);
                            pg_min[k] = pg_min[k].min(pg);
                            if pg.abs() > 1e-12 {
                                let q = sq_norms[r] + bias * bias + diag;
                                let new = (a - g / q).max(0.0);
                                alpha[k] = new as f64;
                                step[k] = (new - a) * y;
                                any |= step[k] != 0.0;
                            }
                        }
                        Loss::Logistic => {
                            let c = if y > 0.0 { cp } else { cn };
                            let a = (sq_norms[r] + bias * bias) as f64;
                            let b = (y * wx[k]) as f64;
                            // Optimise the pair's smaller side (LIBLINEAR's choice of ind1).
                            let first = 0.5 * a * ((c - alpha[k]) - alpha[k]) + b >= 0.0;
                            let (old, s) = if first {
                                (alpha[k], 1.0)
                            } else {
                                (c - alpha[k], -1.0)
                            };
                            let mut z = if c - old < 0.5 * c { 0.1 * old } else { old };
                            let grad = |z: f64| a * (z - old) + s * b + (z / (c - z)).ln();
                            let mut gp = grad(z);
                            // The stopping test reads the gradient before the Newton steps.
                            pg_max[k] = pg_max[k].max(gp.abs() as f32);
                            let mut steps = 0;
                            while steps < 100 && gp.abs() >= inner_eps[k] {
                                let t = z - gp / (a + c / (c - z) / z);
                                // Stay inside (0, C): halve towards a bound rather than cross it.
                                z = if t <= 0.0 {
                                    0.1 * z
                                } else if t >= c {
                                    0.5 * (z + c)
                                } else {
                                    t
                                };
                                gp = grad(z);
                                steps += 1;
                            }
                            newton_steps[k] += steps;
                            if steps > 0 {
                                alpha[k] = if first { z } else { c - z };
                                step[k] = (s * (z - old) * y as f64) as f32;
                                any |= step[k] != 0.0;
                            }
                        }
                    }
                }
                if any {
                    add_step(&mut self.w, &mut wb, cols, vals, &step, bias);
                }
            }
            for k in 0..LANES {
                if done[k] {
                    continue;
                }
                done[k] = match p.loss {
                    Loss::SquaredHinge => pg_max[k] - pg_min[k] <= p.eps as f32,
                    Loss::Logistic => pg_max[k] <= p.eps as f32,
                };
                if newton_steps[k] <= n / 10 {
                    inner_eps[k] = (0.1 * inner_eps[k]).max(inner_eps_min);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        self.touched.sort_unstable();
        let mut out: Vec<Column> = (0..width)
            .map(|k| (Vec::new(), Vec::new(), wb[k]))
            .collect();
        for &f in &self.touched {
            let wf = std::mem::take(&mut self.w[f as usize]);
            for (k, column) in out.iter_mut().enumerate() {
                let v = wf[k];
                if v != 0.0 && v.abs() as f64 >= p.threshold {
                    column.0.push(f);
                    column.1.push(v);
                }
            }
        }
        out
    }
}

/// `w += step x` and `wb += step bias`, lane by lane, for one row `x` (`cols`, `vals`).
#[inline]
fn add_step(
    w: &mut [[f32; LANES]],
    wb: &mut [f32; LANES],
    cols: &[u32],
    vals: &[f32],
    step: &[f32; LANES],
    bias: f32,
) {
    for (&f, &v) in cols.iter().zip(vals) {
        let wf = &mut w[f as usize];
        for k in 0..LANES {
            wf[k] += step[k] * v;
        }
    }
    for k in 0..LANES {
        wb[k] += step[k] * bias;
    }
}
