//! Sparse matrices over plain `Vec`s, laid out as scipy's CSR so that they cross into Python
//! without a copy.

use crate::error::{Error, Result};
use crate::persist::{format_err, Array, Reader, Writer};

/// Checks the parts of a CSR matrix: `indptr` rises from 0 to `nnz`, column ids are `< n_cols`
/// and strictly increasing in each row, values are finite.
fn check_parts<P: Copy + TryInto<usize>>(
    n_cols: usize,
    indptr: &[P],
    indices: &[u32],
    data: &[f32],
) -> std::result::Result<(), String> {
    let ptr = |i: usize| indptr[i].try_into().unwrap_or(usize::MAX);
    if indptr.is_empty() || ptr(0) != 0 {
        return Err("indptr must start at 0".into());
    }
    let last = ptr(indptr.len() - 1);
    if indices.len() != data.len() || last != indices.len() {
        return Err(format!(
            "indptr ends at {last} but there are {} indices and {} values",
            indices.len(),
            data.len()
        ));
    }
    if (1..indptr.len()).any(|i| ptr(i - 1) > ptr(i)) {
        return Err("indptr must not decrease".into());
    }
    for r in 0..indptr.len() - 1 {
        let row = &indices[ptr(r)..ptr(r + 1)];
        if row.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "row {r}: column indices must be sorted and distinct (call sort_indices() and \
                 sum_duplicates() on the scipy matrix)"
            ));
        }
        if let Some(&c) = row.last().filter(|&&c| c as usize >= n_cols) {
            return Err(format!(
                "row {r}: column {c} is out of range for {n_cols} columns"
            ));
        }
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {} at position {i} is not finite", data[i]));
    }
    Ok(())
}

/// An immutable CSR matrix whose arrays may live in a model file (see [`CsrMatrix`] for the
/// layout).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CsrArrays {
    n_cols: usize,
    indptr: Array<u64>,
    indices: Array<u32>,
    data: Array<f32>,
}

impl From<CsrMatrix> for CsrArrays {
    fn from(m: CsrMatrix) -> Self {
        CsrArrays {
            n_cols: m.n_cols,
            indptr: m
                .indptr
                .into_iter()
                .map(|p| p as u64)
                .collect::<Vec<_>>()
                .into(),
            indices: m.indices.into(),
            data: m.data.into(),
        }
    }
}

impl CsrArrays {
    /// Number of rows.
    pub(crate) fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of columns.
    pub(crate) fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored values.
    pub(crate) fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// A copy as a [`CsrMatrix`].
    pub(crate) fn to_matrix(&self) -> CsrMatrix {
        CsrMatrix {
            n_cols: self.n_cols,
            indptr: self.indptr.iter().map(|&p| p as usize).collect(),
            indices: self.indices.to_vec(),
            data: self.data.to_vec(),
        }
    }

    /// Bytes held.
    pub(crate) fn nbytes(&self) -> usize {
        self.indptr.nbytes() + self.indices.nbytes() + self.data.nbytes()
    }

    /// Row `r` as `(column ids, values)`.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Sections `{name}.p`, `{name}.i`, `{name}.v` (`name` at most 6 bytes).
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        w.array(&format!("{name}.p"), &self.indptr)
            .array(&format!("{name}.i"), &self.indices)
            .array(&format!("{name}.v"), &self.data);
    }

    /// Reads what [`CsrArrays::write`] wrote as a matrix of `n_cols` columns, checking it as
    /// [`CsrMatrix::from_parts`] does.
    pub(crate) fn read(r: &Reader, name: &str, n_cols: usize) -> Result<Self> {
        let m = CsrArrays {
            n_cols,
            indptr: r.array(&format!("{name}.p"))?,
            indices: r.array(&format!("{name}.i"))?,
            data: r.array(&format!("{name}.v"))?,
        };
        check_parts(n_cols, &m.indptr, &m.indices, &m.data)
            .map_err(|why| format_err(format!("matrix {name:?}: {why}")))?;
        Ok(m)
    }
}

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

/// Rows of a sparse matrix read one at a time: a [`CsrMatrix`], or rows stored in parts that
/// many rows share ([`crate::text::FactoredRows`]). What training reads its instances through.
pub trait SparseRows: Sync {
    /// Number of rows.
    fn n_rows(&self) -> usize;

    /// Number of columns.
    fn n_cols(&self) -> usize;

    /// Row `r` as `(sorted column ids, values)`: borrowed from `self`, or written into `buf`
    /// when the row is not stored whole.
    fn row_in<'a>(&'a self, r: usize, buf: &'a mut RowBuf) -> (&'a [u32], &'a [f32]);
}

/// Where [`SparseRows::row_in`] writes a row that is not stored whole.
#[derive(Debug, Clone, Default)]
pub struct RowBuf {
    /// Column ids.
    pub cols: Vec<u32>,
    /// Values.
    pub vals: Vec<f32>,
}

impl SparseRows for CsrMatrix {
    fn n_rows(&self) -> usize {
        CsrMatrix::n_rows(self)
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn row_in<'a>(&'a self, r: usize, _: &'a mut RowBuf) -> (&'a [u32], &'a [f32]) {
        self.row(r)
    }
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

    /// The sections of [`CsrArrays::write`] (the pointers copied as u64s), read back by
    /// [`CsrArrays::read`].
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        let indptr: Vec<u64> = self.indptr.iter().map(|&p| p as u64).collect();
        w.array_copy(&format!("{name}.p"), &indptr)
            .array(&format!("{name}.i"), &self.indices)
            .array(&format!("{name}.v"), &self.data);
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

    /// Builds from parts that come from outside (e.g. a scipy matrix), checking every invariant:
    /// `indptr` rises from 0 to `nnz`, column ids are `< n_cols` and strictly increasing in each
    /// row, values are finite. `what` names the matrix in the error.
    pub fn from_parts(
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f32>,
        what: &str,
    ) -> Result<Self> {
        check_parts(n_cols, &indptr, &indices, &data)
            .map_err(|why| Error::InvalidInput(format!("{what}: {why}")))?;
        Ok(CsrMatrix {
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// The transpose (`n_cols` rows of `n_rows` columns), rows sorted.
    pub fn transpose(&self) -> CsrMatrix {
        transpose(self)
    }
}

/// The transpose of `m` (`n_cols` rows of `n_rows` columns), rows sorted.
pub(crate) fn transpose(m: &dyn SparseRows) -> CsrMatrix {
    let mut buf = RowBuf::default();
    let mut counts = vec![0usize; m.n_cols() + 1];
    for r in 0..m.n_rows() {
        for &c in m.row_in(r, &mut buf).0 {
            counts[c as usize + 1] += 1;
        }
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    let indptr = counts.clone();
    let mut next = counts;
    let nnz = indptr[indptr.len() - 1];
    let mut indices = vec![0u32; nnz];
    let mut data = vec![0f32; nnz];
    for r in 0..m.n_rows() {
        let (cols, vals) = m.row_in(r, &mut buf);
        for (&c, &v) in cols.iter().zip(vals) {
            let at = next[c as usize];
            indices[at] = r as u32;
            data[at] = v;
            next[c as usize] += 1;
        }
    }
    CsrMatrix {
        n_cols: m.n_rows(),
        indptr,
        indices,
        data,
    }
}

/// Rows that each hold one column of value 1: the labels of rows that have exactly one (a
/// completer's training rows, each labelled with its next query), 4 bytes a row where a
/// [`CsrMatrix`] takes 16.
///
/// ```
/// use xrcomplete_core::{OneLabelRows, RowBuf, SparseRows};
/// let y = OneLabelRows::new(5, vec![3, 0, 3])?;
/// assert_eq!(y.row_in(2, &mut RowBuf::default()), (&[3u32][..], &[1.0f32][..]));
/// assert!(OneLabelRows::new(3, vec![3]).is_err());
/// # Ok::<(), xrcomplete_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OneLabelRows {
    n_cols: usize,
    labels: Vec<u32>,
}

impl OneLabelRows {
    /// Row `r` holds column `labels[r]`; every label must be `< n_cols`.
    pub fn new(n_cols: usize, labels: Vec<u32>) -> Result<Self> {
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= n_cols) {
            return Err(Error::InvalidInput(format!(
                "label {bad} is out of range for {n_cols} labels"
            )));
        }
        Ok(OneLabelRows { n_cols, labels })
    }
}

impl SparseRows for OneLabelRows {
    fn n_rows(&self) -> usize {
        self.labels.len()
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn row_in<'a>(&'a self, r: usize, _: &'a mut RowBuf) -> (&'a [u32], &'a [f32]) {
        (std::slice::from_ref(&self.labels[r]), &[1.0])
    }
}

/// Rows of sorted ids without values (a matrix whose values are all 1): the positive rows of
/// each node of a level, 4 bytes an id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    ptr: Vec<usize>,
    ids: Vec<u32>,
}

impl Pattern {
    /// No row yet, room for `n_ids` ids.
    pub(crate) fn with_capacity(n_ids: usize) -> Self {
        Pattern {
            ptr: vec![0],
            ids: Vec::with_capacity(n_ids),
        }
    }

    /// Appends a row of sorted ids.
    pub(crate) fn push_row(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.ids.extend(ids);
        self.ptr.push(self.ids.len());
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &[u32] {
        &self.ids[self.ptr[i]..self.ptr[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_twice_is_the_identity() {
        let m = CsrMatrix::from_rows(
            3,
            [
                (vec![0, 2], vec![1.0, 2.0]),
                (vec![], vec![]),
                (vec![1, 2], vec![3.0, 4.0]),
            ],
        );
        let t = m.transpose();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.row(2), (&[0u32, 2][..], &[2.0f32, 4.0][..]));
        assert_eq!(t.transpose(), m);
    }

    #[test]
    fn parts_from_outside_are_checked() {
        let ok = CsrMatrix::from_parts(3, vec![0, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0], "X");
        assert!(ok.is_ok());
        for (indptr, indices, data) in [
            (vec![1, 2], vec![0, 1], vec![1.0, 1.0]),       // not from 0
            (vec![0, 3], vec![0, 1], vec![1.0, 1.0]),       // past the end
            (vec![0, 2, 1, 2], vec![0, 1], vec![1.0, 1.0]), // decreasing
            (vec![0, 2], vec![1, 0], vec![1.0, 1.0]),       // unsorted
            (vec![0, 2], vec![1, 1], vec![1.0, 1.0]),       // duplicate
            (vec![0, 1], vec![3], vec![1.0]),               // out of range
            (vec![0, 1], vec![0], vec![f32::NAN]),          // not finite
            (vec![0, 1], vec![0], vec![]),                  // lengths differ
        ] {
            assert!(CsrMatrix::from_parts(3, indptr, indices, data, "X").is_err());
        }
    }

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
