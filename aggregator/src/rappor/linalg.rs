//! Small dense solvers for the RAPPOR decoder, in normal-equation (Gram) form:
//! a Cholesky factorization that skips linearly dependent columns (so
//! rank-deficient designs are handled, not fatal) and Lawson-Hanson
//! non-negative least squares.
//!
//! Sizes are (candidates + 1)^2, a few hundred to a few thousand: plain loops
//! over row-major `Vec<f64>` are enough.

/// A symmetric matrix stored row-major in full.
#[derive(Debug, Clone)]
pub(crate) struct Gram {
    pub(crate) n: usize,
    pub(crate) a: Vec<f64>,
}

impl Gram {
    pub(crate) fn zeros(n: usize) -> Self {
        Self {
            n,
            a: vec![0.0; n * n],
        }
    }

    pub(crate) fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }

    pub(crate) fn add(&mut self, i: usize, j: usize, v: f64) {
        self.a[i * self.n + j] += v;
    }
}

/// Cholesky factor `L L^T = G[kept, kept]` of the columns that are linearly
/// independent of the ones before them (in the order given). Rows of L are
/// stored by length (row r has r + 1 entries), so a column can be appended in
/// O(n^2) without refactoring.
#[derive(Debug, Clone)]
pub(crate) struct Cholesky {
    /// The kept columns (indices into G), in order.
    pub(crate) kept: Vec<usize>,
    /// Columns skipped because they are (numerically) dependent on earlier ones.
    pub(crate) dropped: Vec<usize>,
    rows: Vec<Vec<f64>>,
}

/// Relative pivot below which a column counts as dependent.
const PIVOT_TOL: f64 = 1e-10;

impl Cholesky {
    pub(crate) fn new(g: &Gram, cols: &[usize]) -> Self {
        let mut chol = Self {
            kept: Vec::with_capacity(cols.len()),
            dropped: Vec::new(),
            rows: Vec::with_capacity(cols.len()),
        };
        for &col in cols {
            if !chol.push(g, col) {
                chol.dropped.push(col);
            }
        }
        chol
    }

    /// Appends column `col`; returns `false` (and changes nothing) when it is
    /// numerically dependent on the kept columns.
    pub(crate) fn push(&mut self, g: &Gram, col: usize) -> bool {
        let r = self.kept.len();
        let mut row = Vec::with_capacity(r + 1);
        for (j, &kj) in self.kept.iter().enumerate() {
            let lj = &self.rows[j];
            let s = g.at(col, kj) - row.iter().zip(lj).map(|(a, b)| a * b).sum::<f64>();
            row.push(s / lj[j]);
        }
        let diag = g.at(col, col);
        let d = diag - row.iter().map(|v| v * v).sum::<f64>();
        if !(diag > 0.0 && d > PIVOT_TOL * diag) {
            return false;
        }
        row.push(d.sqrt());
        self.rows.push(row);
        self.kept.push(col);
        true
    }

    fn dim(&self) -> usize {
        self.kept.len()
    }

    /// Solves `G[kept, kept] x = rhs[kept]` where `rhs` is indexed like G.
    pub(crate) fn solve(&self, rhs: &[f64]) -> Vec<f64> {
        let n = self.dim();
        let mut y: Vec<f64> = self.kept.iter().map(|&c| rhs[c]).collect();
        for i in 0..n {
            let row = &self.rows[i];
            let s = row[..i].iter().zip(&y).map(|(a, b)| a * b).sum::<f64>();
            y[i] = (y[i] - s) / row[i];
        }
        for i in (0..n).rev() {
            let s = (i + 1..n).map(|t| self.rows[t][i] * y[t]).sum::<f64>();
            y[i] = (y[i] - s) / self.rows[i][i];
        }
        y
    }

    /// The diagonal of `G[kept, kept]^{-1}`, from the inverse of L.
    pub(crate) fn inverse_diagonal(&self) -> Vec<f64> {
        let n = self.dim();
        let mut diag = vec![0.0; n];
        let mut col = vec![0.0; n];
        for j in 0..n {
            // Column j of L^-1 by forward substitution (entries above j are zero).
            col[j] = 1.0 / self.rows[j][j];
            for i in j + 1..n {
                let row = &self.rows[i];
                let s = row[j..i]
                    .iter()
                    .zip(&col[j..i])
                    .map(|(a, b)| a * b)
                    .sum::<f64>();
                col[i] = -s / row[i];
            }
            // G^-1 = L^-T L^-1, so (G^-1)_{jj} is the squared norm of column j of L^-1.
            diag[j] = col[j..].iter().map(|v| v * v).sum();
        }
        diag
    }
}

/// Lawson-Hanson non-negative least squares in Gram form: minimizes
/// `x^T G x / 2 - b^T x` over `x >= 0` for the columns in `allowed`.
/// Columns that are linearly dependent on the passive set are excluded.
/// Returns `Err` when `max_iter` inner iterations are not enough.
pub(crate) fn nnls(
    g: &Gram,
    b: &[f64],
    allowed: &[bool],
    max_iter: usize,
) -> Result<Vec<f64>, String> {
    let n = g.n;
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let tol_w = 1e-10 * scale;
    let mut x = vec![0.0; n];
    let mut passive = vec![false; n];
    let mut excluded: Vec<bool> = allowed.iter().map(|a| !a).collect();
    let mut iterations = 0;
    // Factor of the passive columns in insertion order; rebuilt after removals.
    let mut chol = Cholesky::new(g, &[]);
    loop {
        let w = gradient(g, b, &x);
        let next = (0..n)
            .filter(|&j| !passive[j] && !excluded[j] && w[j] > tol_w)
            .max_by(|&i, &j| w[i].total_cmp(&w[j]));
        let Some(t) = next else { break };
        if !chol.push(g, t) {
            excluded[t] = true;
            continue;
        }
        passive[t] = true;
        let mut first = true;
        loop {
            iterations += 1;
            if iterations > max_iter {
                return Err(format!("NNLS needed more than {max_iter} iterations"));
            }
            let z = chol.solve(b);
            if z.iter().all(|&v| v > 0.0) {
                for (&c, &v) in chol.kept.iter().zip(&z) {
                    x[c] = v;
                }
                break;
            }
            // Step towards z until the first passive variable hits zero.
            let mut alpha = 1.0f64;
            for (&c, &v) in chol.kept.iter().zip(&z) {
                if v <= 0.0 {
                    alpha = alpha.min(x[c] / (x[c] - v));
                }
            }
            for (&c, &v) in chol.kept.iter().zip(&z) {
                x[c] += alpha * (v - x[c]);
                if x[c] <= 0.0 || (v <= 0.0 && x[c] <= 1e-15 * scale) {
                    x[c] = 0.0;
                    passive[c] = false;
                }
            }
            // A column that cannot enter on its own first step would cycle: exclude it.
            if first && !passive[t] {
                excluded[t] = true;
            }
            first = false;
            let order: Vec<usize> = chol.kept.iter().copied().filter(|&c| passive[c]).collect();
            chol = Cholesky::new(g, &order);
            for &d in &chol.dropped {
                passive[d] = false;
                excluded[d] = true;
                x[d] = 0.0;
            }
            if chol.kept.is_empty() {
                break;
            }
        }
    }
    Ok(x)
}

/// `b - G x`.
fn gradient(g: &Gram, b: &[f64], x: &[f64]) -> Vec<f64> {
    (0..g.n)
        .map(|i| {
            let row = &g.a[i * g.n..(i + 1) * g.n];
            b[i] - row.iter().zip(x).map(|(a, v)| a * v).sum::<f64>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram_of(cols: &[Vec<f64>]) -> Gram {
        let n = cols.len();
        let mut g = Gram::zeros(n);
        for i in 0..n {
            for j in 0..n {
                g.add(i, j, cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum());
            }
        }
        g
    }

    #[test]
    fn cholesky_solves_and_inverts() {
        // G = [[4, 2], [2, 3]]: G^-1 = [[3, -2], [-2, 4]] / 8.
        let g = Gram {
            n: 2,
            a: vec![4.0, 2.0, 2.0, 3.0],
        };
        let chol = Cholesky::new(&g, &[0, 1]);
        let x = chol.solve(&[2.0, 1.0]);
        // Solution of [[4,2],[2,3]] x = [2,1]: x = [0.5, 0].
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        let d = chol.inverse_diagonal();
        assert!((d[0] - 3.0 / 8.0).abs() < 1e-12 && (d[1] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn cholesky_drops_dependent_columns() {
        let g = gram_of(&[
            vec![1.0, 0.0, 1.0],
            vec![0.0, 1.0, 1.0],
            vec![1.0, 1.0, 2.0],
        ]);
        let chol = Cholesky::new(&g, &[0, 1, 2]);
        assert_eq!(chol.kept, vec![0, 1]);
        assert_eq!(chol.dropped, vec![2]);
    }

    #[test]
    fn nnls_matches_a_known_answer() {
        // y = 2 a + 0 b with b anti-correlated: unconstrained LS would make b negative.
        let a = vec![1.0, 1.0, 0.0, 0.0];
        let b = vec![0.0, 1.0, 1.0, 0.0];
        let y = [2.0, 2.0, -1.0, 0.0];
        let g = gram_of(&[a.clone(), b.clone()]);
        let rhs = [
            a.iter().zip(&y).map(|(u, v)| u * v).sum::<f64>(),
            b.iter().zip(&y).map(|(u, v)| u * v).sum::<f64>(),
        ];
        let x = nnls(&g, &rhs, &[true, true], 100).unwrap();
        assert!((x[0] - 2.0).abs() < 1e-12, "{x:?}");
        assert_eq!(x[1], 0.0);
    }

    #[test]
    fn nnls_survives_rank_deficiency() {
        // Three columns, one the sum of the other two; the fit is still exact.
        let cols = [
            vec![1.0, 0.0, 1.0],
            vec![0.0, 1.0, 1.0],
            vec![1.0, 1.0, 2.0],
        ];
        let y = [1.0, 1.0, 2.0];
        let g = gram_of(&cols);
        let rhs: Vec<f64> = cols
            .iter()
            .map(|c| c.iter().zip(&y).map(|(u, v)| u * v).sum())
            .collect();
        let x = nnls(&g, &rhs, &[true; 3], 100).unwrap();
        let fit: Vec<f64> = (0..3)
            .map(|r| (0..3).map(|c| cols[c][r] * x[c]).sum())
            .collect();
        for (f, t) in fit.iter().zip(&y) {
            assert!((f - t).abs() < 1e-9, "{x:?}");
        }
    }
}
