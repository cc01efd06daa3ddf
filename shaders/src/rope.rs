//! The stacked q/k/v projection output split into heads, with rotary
//! embeddings applied to the queries and keys: `x * cos + rotate_half(x) *
//! sin`, `rotate_half([a, b]) = [-b, a]` (the Llama convention), each
//! element computed as that formula (two products, one sum), so it equals
//! the same ops on tensors bit for bit.

/// Where the heads sit in one row of the stacked projection.
#[derive(Debug, Clone, Copy)]
pub struct Stacked {
    /// Rows (positions).
    pub rows: usize,
    /// Width of one head.
    pub dim: usize,
    /// Heads before the ones wanted, in each row.
    pub first_head: usize,
    /// Heads wanted.
    pub heads: usize,
}

/// `heads` heads of every row of `qkv` (`[rows, width]` row-major), as
/// `[heads, rows, dim]`, rotated by the per-row `cos` and `sin` tables
/// (`[rows, dim]`) when given.
///
/// # Panics
/// When the slices are shorter than the shape says.
pub fn split_heads(qkv: &[f32], at: Stacked, rotary: Option<(&[f32], &[f32])>) -> Vec<f32> {
    let Stacked {
        rows,
        dim,
        first_head,
        heads,
    } = at;
    let width = qkv.len() / rows.max(1);
    assert!(
        (first_head + heads) * dim <= width,
        "the heads lie within a row"
    );
    let half = dim / 2;
    let mut out = vec![0f32; heads * rows * dim];
    for (h, head) in out.chunks_exact_mut((rows * dim).max(1)).enumerate() {
        for (r, dst) in head.chunks_exact_mut(dim.max(1)).enumerate() {
            let src = &qkv[r * width + (first_head + h) * dim..][..dim];
            match rotary {
                None => dst.copy_from_slice(src),
                Some((cos, sin)) => {
                    let (cos, sin) = (&cos[r * dim..][..dim], &sin[r * dim..][..dim]);
                    for j in 0..dim {
                        let rotated = if j < half {
                            -src[j + half]
                        } else {
                            src[j - half]
                        };
                        dst[j] = src[j] * cos[j] + rotated * sin[j];
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reference: rotate_half then the formula, head by head.
    #[test]
    fn agrees_with_rotate_half() {
        let (rows, dim, heads_total) = (3, 4, 5);
        let width = heads_total * dim;
        let qkv: Vec<f32> = (0..rows * width).map(|i| i as f32 * 0.25 - 3.0).collect();
        let cos: Vec<f32> = (0..rows * dim).map(|i| (i as f32 * 0.3).cos()).collect();
        let sin: Vec<f32> = (0..rows * dim).map(|i| (i as f32 * 0.3).sin()).collect();
        let at = Stacked {
            rows,
            dim,
            first_head: 1,
            heads: 2,
        };
        let rotated = split_heads(&qkv, at, Some((&cos, &sin)));
        let plain = split_heads(&qkv, at, None);
        for h in 0..2 {
            for r in 0..rows {
                let x = &qkv[r * width + (1 + h) * dim..][..dim];
                assert_eq!(&plain[(h * rows + r) * dim..][..dim], x);
                let half: Vec<f32> = x[2..]
                    .iter()
                    .map(|v| -v)
                    .chain(x[..2].iter().copied())
                    .collect();
                for j in 0..dim {
                    let want = x[j] * cos[r * dim + j] + half[j] * sin[r * dim + j];
                    assert_eq!(rotated[(h * rows + r) * dim + j], want);
                }
            }
        }
    }
}
