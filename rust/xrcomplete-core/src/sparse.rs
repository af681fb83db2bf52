//! Sparse matrices over plain `Vec`s, laid out as scipy's CSR so that they cross into Python
//! without a copy.

use crate::error::{Error, Result};

/// A compressed sparse row matrix of `f32`: row `r` holds `indices[indptr[r]..indptr[r + 1]]`
/// (strictly increasing column ids) with the values `data[..]` at the same positions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsrMatrix {
    /// Number of columns.
    pub n_cols: usize,
    /// Row starts, `n_rows + 1` entries, from 0 to `nnz`.
    pub indptr: Vec<usize>,
    /// Column ids, sorted within each row.
    pub indices: Vec<u32>,
    /// Values, aligned with `indices`.
    pub data: Vec<f32>,
}

impl CsrMatrix {
    /// An empty matrix with `n_cols` columns and no rows.
    pub fn new(n_cols: usize) -> Self {
        CsrMatrix {
            n_cols,
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Stacks rows given as `(sorted column ids, values)` pairs.
    pub fn from_rows<I>(n_cols: usize, rows: I) -> Self
    where
        I: IntoIterator<Item = (Vec<u32>, Vec<f32>)>,
    {
        let mut m = CsrMatrix::new(n_cols);
        for (indices, data) in rows {
            m.push_row(&indices, &data);
        }
        m
    }

    /// Appends one row; `indices` must be sorted, distinct and `< n_cols`.
    pub fn push_row(&mut self, indices: &[u32], data: &[f32]) {
        debug_assert_eq!(indices.len(), data.len());
        debug_assert!(indices.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(indices.iter().all(|&c| (c as usize) < self.n_cols));
        self.indices.extend_from_slice(indices);
        self.data.extend_from_slice(data);
        self.indptr.push(self.indices.len());
    }

    /// Appends all rows of `other`, which must have the same number of columns.
    pub fn append(&mut self, other: &CsrMatrix) -> Result<()> {
        if other.n_cols != self.n_cols {
            return Err(Error::InvalidInput(format!(
                "cannot stack a matrix of {} columns under one of {}",
                other.n_cols, self.n_cols
            )));
        }
        let base = self.indices.len();
        self.indices.extend_from_slice(&other.indices);
        self.data.extend_from_slice(&other.data);
        self.indptr
            .extend(other.indptr[1..].iter().map(|&p| p + base));
        Ok(())
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Row `r` as `(column ids, values)`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.data[a..b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_stack_and_append() {
        let mut a = CsrMatrix::from_rows(4, [(vec![0, 3], vec![1.0, 2.0]), (vec![], vec![])]);
        let b = CsrMatrix::from_rows(4, [(vec![1], vec![5.0])]);
        a.append(&b).unwrap();
        assert_eq!(a.n_rows(), 3);
        assert_eq!(a.indptr, vec![0, 2, 2, 3]);
        assert_eq!(a.row(2), (&[1u32][..], &[5.0f32][..]));
        assert!(a.append(&CsrMatrix::new(3)).is_err());
    }
}
