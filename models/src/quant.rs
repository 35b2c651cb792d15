//! Weight matrices in GGML's block formats, multiplied with F32 activations.
//!
//! The weights stay quantised in memory (Q4_1 as SmolLM2 ships, Q8_0 for its
//! tied embeddings); each block is widened to F32 in registers and
//! multiplied with the activations as they are, which are never quantised
//! (llama.cpp quantises them to 8 bits per block for its integer dot
//! products; F32 costs more arithmetic but decoding is bound by reading the
//! weights, not by arithmetic).
//!
//! The hot kernels (AVX-512, AVX2) use `std::arch` intrinsics behind length
//! checks; the baseline is plain Rust. The variant is picked once at run
//! time from the CPU's features, because the appliance runs on whatever CPU
//! the customer has.

use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use half::f16;
use rayon::prelude::*;

/// Weights per block in every supported format.
pub(crate) const QK: usize = 32;

/// Block scales are widened from f16 this many at a time.
const GROUP: usize = 16;

/// The weights of a matrix, row-major, one row per output feature.
#[derive(Clone)]
enum Blocks {
    /// Per block of 32: weight = scale × nibble + min (f16 as stored, so
    /// that a block costs 20 bytes of memory traffic, as in the file).
    Q4_1 {
        scales: Vec<f16>,
        mins: Vec<f16>,
        /// 16 bytes per block: weight i in the low nibble of byte i,
        /// weight 16 + i in its high nibble.
        nibbles: Vec<u8>,
    },
    /// Per block of 32: weight = scale × byte.
    Q8_0 { scales: Vec<f16>, quants: Vec<i8> },
    /// Plain F32.
    F32(Vec<f32>),
}

/// A weight matrix of `rows` output features by `cols` inputs.
#[derive(Clone)]
pub(crate) struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

/// Which compiled variant of the kernels runs on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// x86-64 baseline (SSE2) or any other architecture.
    Baseline,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// AVX-512 (F, BW, VL) with FMA.
    Avx512,
}

impl Isa {
    /// The best variant this CPU runs, detected once.
    pub(crate) fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
                {
                    return Isa::Avx512;
                }
                if std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
                {
                    return Isa::Avx2;
                }
            }
            Isa::Baseline
        })
    }

    /// Variants this CPU can run (for tests that cover each one).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let best = Isa::detect();
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| *i as u8 <= best as u8)
            .collect()
    }

    /// Runs `f` compiled for this variant (or, if this CPU lacks it, as
    /// plain code): `f` is inlined into a function built with the variant's
    /// target features, so that its loops vectorise to those registers,
    /// where the crate itself is built for baseline x86-64.
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        if self as u8 > Isa::detect() as u8 {
            return f();
        }
        match self {
            // SAFETY: detect() found the variant's features on this CPU.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::with_avx512(f) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::with_avx2(f) },
            _ => f(),
        }
    }

    /// Name for diagnostics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl QMatrix {
    /// Takes a 2-D tensor as read from a GGUF file: Q4_1 and Q8_0 are kept
    /// as they are (scales apart from the quants), F32 is kept, and any other
    /// format is dequantised to F32.
    pub(crate) fn from_qtensor(t: &QTensor) -> candle_core::Result<QMatrix> {
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(QK) {
            candle_core::bail!("{cols} columns is not a multiple of {QK}");
        }
        let blocks = match t.dtype() {
            GgmlDType::Q4_1 => {
                let raw = t.data()?;
                let n = rows * cols / QK;
                if raw.len() != n * 20 {
                    candle_core::bail!("Q4_1 data of {} bytes, expected {}", raw.len(), n * 20);
                }
                let mut scales = Vec::with_capacity(n);
                let mut mins = Vec::with_capacity(n);
                let mut nibbles = Vec::with_capacity(n * 16);
                for b in raw.chunks_exact(20) {
                    scales.push(f16::from_le_bytes([b[0], b[1]]));
                    mins.push(f16::from_le_bytes([b[2], b[3]]));
                    nibbles.extend_from_slice(&b[4..20]);
                }
                Blocks::Q4_1 {
                    scales,
                    mins,
                    nibbles,
                }
            }
            GgmlDType::Q8_0 => {
                let raw = t.data()?;
                let n = rows * cols / QK;
                if raw.len() != n * 34 {
                    candle_core::bail!("Q8_0 data of {} bytes, expected {}", raw.len(), n * 34);
                }
                let mut scales = Vec::with_capacity(n);
                let mut quants = Vec::with_capacity(n * QK);
                for b in raw.chunks_exact(34) {
                    scales.push(f16::from_le_bytes([b[0], b[1]]));
                    quants.extend(b[2..34].iter().map(|&q| q as i8));
                }
                Blocks::Q8_0 { scales, quants }
            }
            _ => Blocks::F32(
                t.dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ),
        };
        Ok(QMatrix { rows, cols, blocks })
    }

    /// Output features.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// The format kept in memory: `Q4_1`, `Q8_0` or `F32`.
    pub(crate) fn format(&self) -> &'static str {
        match self.blocks {
            Blocks::Q4_1 { .. } => "Q4_1",
            Blocks::Q8_0 { .. } => "Q8_0",
            Blocks::F32(_) => "F32",
        }
    }

    /// Stacks matrices with the same inputs into one whose rows are theirs
    /// in order (for instance q, k and v), so that one product computes all
    /// of them. Matrices of different formats are all widened to F32.
    pub(crate) fn stack(parts: &[QMatrix]) -> candle_core::Result<QMatrix> {
        let cols = parts.first().map(|p| p.cols).unwrap_or(0);
        if parts.iter().any(|p| p.cols != cols) {
            candle_core::bail!("stacked matrices must have the same number of columns");
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let same = parts.windows(2).all(|w| w[0].format() == w[1].format());
        let blocks = match parts.first().map(|p| &p.blocks) {
            Some(Blocks::Q4_1 { .. }) if same => {
                let (mut scales, mut mins, mut nibbles) = (Vec::new(), Vec::new(), Vec::new());
                for p in parts {
                    if let Blocks::Q4_1 {
                        scales: s,
                        mins: m,
                        nibbles: q,
                    } = &p.blocks
                    {
                        scales.extend_from_slice(s);
                        mins.extend_from_slice(m);
                        nibbles.extend_from_slice(q);
                    }
                }
                Blocks::Q4_1 {
                    scales,
                    mins,
                    nibbles,
                }
            }
            Some(Blocks::Q8_0 { .. }) if same => {
                let (mut scales, mut quants) = (Vec::new(), Vec::new());
                for p in parts {
                    if let Blocks::Q8_0 {
                        scales: s,
                        quants: q,
                    } = &p.blocks
                    {
                        scales.extend_from_slice(s);
                        quants.extend_from_slice(q);
                    }
                }
                Blocks::Q8_0 { scales, quants }
            }
            _ => Blocks::F32(
                parts
                    .iter()
                    .flat_map(|p| p.dequantize_rows(0..p.rows))
                    .collect(),
            ),
        };
        Ok(QMatrix { rows, cols, blocks })
    }

    /// Rows `range` as F32 (embedding lookups).
    pub(crate) fn dequantize_rows(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        let per_row = self.cols / QK;
        let blocks = range.start * per_row..range.end * per_row;
        let mut out = Vec::with_capacity(blocks.len() * QK);
        match &self.blocks {
            Blocks::Q4_1 {
                scales,
                mins,
                nibbles,
            } => {
                for b in blocks {
                    let q = &nibbles[b * 16..b * 16 + 16];
                    let (d, m) = (scales[b].to_f32(), mins[b].to_f32());
                    out.extend(q.iter().map(|&v| (v & 15) as f32 * d + m));
                    out.extend(q.iter().map(|&v| (v >> 4) as f32 * d + m));
                }
            }
            Blocks::Q8_0 { scales, quants } => {
                for b in blocks {
                    let q = &quants[b * QK..b * QK + QK];
                    let d = scales[b].to_f32();
                    out.extend(q.iter().map(|&v| v as f32 * d));
                }
            }
            Blocks::F32(w) => out.extend_from_slice(&w[blocks.start * QK..blocks.end * QK]),
        }
        out
    }

    /// `out[t][r] = Σ_c self[r][c] · x[t][c]` for the `m` rows of `x`
    /// (row-major, `m × cols`); `out` is `m × rows`. Runs on the rayon pool
    /// with this CPU's kernels.
    pub(crate) fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(Isa::detect(), x, m, out)
    }

    pub(crate) fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(
            x.len(),
            m * self.cols,
            "activations do not match the matrix"
        );
        assert_eq!(out.len(), m * self.rows, "output does not match the matrix");
        let nb = self.cols / QK;
        // Block sums of each activation row, for the Q4_1 minimums; each
        // row padded with zeros to a whole group of scales.
        let stride = nb.next_multiple_of(GROUP);
        let xsum: Vec<f32> = match self.blocks {
            Blocks::Q4_1 { .. } => x
                .chunks_exact(self.cols)
                .flat_map(|row| {
                    let sums = row.chunks_exact(QK).map(|c| c.iter().sum::<f32>());
                    sums.chain(std::iter::repeat_n(0.0, stride - nb))
                })
                .collect(),
            _ => Vec::new(),
        };
        let threads = rayon::current_num_threads().max(1);
        let rows_per_task = self.rows.div_ceil(threads * 8).max(16);
        let task = |(i, dst): (usize, &mut [f32])| {
            let r0 = i * rows_per_task;
            let rows = r0..r0 + dst.len() / m;
            dispatch(isa, &self.blocks, nb, rows, x, &xsum, m, dst);
        };
        if m == 1 {
            out.par_chunks_mut(rows_per_task).enumerate().for_each(task);
        } else {
            // Tasks own whole weight rows, so they fill a rows × m buffer;
            // it is transposed into out at the end.
            let mut t = vec![0f32; self.rows * m];
            t.par_chunks_mut(rows_per_task * m)
                .enumerate()
                .for_each(task);
            for (r, col) in t.chunks_exact(m).enumerate() {
                for (tok, v) in col.iter().enumerate() {
                    out[tok * self.rows + r] = *v;
                }
            }
        }
    }
}

/// Runs the kernel variant `isa` over weight rows `rows`, writing
/// `dst[(r - rows.start) * m + t]`.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    isa: Isa,
    w: &Blocks,
    nb: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    xsum: &[f32],
    m: usize,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: Isa::detect chose these variants only after checking the
        // CPU has the features they are compiled for, and tests only run
        // the ones Isa::available lists.
        Isa::Avx512 => return unsafe { rows_avx512(w, nb, rows, x, xsum, m, dst) },
        Isa::Avx2 => return unsafe { rows_avx2(w, nb, rows, x, xsum, m, dst) },
        Isa::Baseline => {}
    }
    let _ = isa;
    rows_tiled::<Plain>(w, nb, rows, x, xsum, m, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
fn rows_avx512(
    w: &Blocks,
    nb: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    xsum: &[f32],
    m: usize,
    dst: &mut [f32],
) {
    rows_tiled::<x86::Avx512>(w, nb, rows, x, xsum, m, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2(
    w: &Blocks,
    nb: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    xsum: &[f32],
    m: usize,
    dst: &mut [f32],
) {
    rows_tiled::<x86::Avx2>(w, nb, rows, x, xsum, m, dst)
}

/// Most activation rows multiplied per pass over a weight row: the expanded
/// block is reused this many times (tiles of 8, 4, 2 and 1 rows).
const TILE: usize = 8;

/// The per-row kernels of one variant: `R` activation rows (`xs`, `R × k`)
/// against one weight row, results into `out[..R]`.
trait Kernels {
    /// `xsum`: block sums of each activation row, rows padded to a
    /// multiple of [`GROUP`] blocks.
    fn q4_1<const R: usize>(
        q: &[u8],
        sc: &[f16],
        mn: &[f16],
        xs: &[f32],
        xsum: &[f32],
        out: &mut [f32],
    );
    fn q8_0<const R: usize>(q: &[i8], sc: &[f16], xs: &[f32], out: &mut [f32]);
    fn f32_rows<const R: usize>(row: &[f32], xs: &[f32], out: &mut [f32]);
}

/// Plain Rust, for CPUs without AVX2 (and the reference in tests).
struct Plain;

impl Kernels for Plain {
    fn q4_1<const R: usize>(
        q: &[u8],
        sc: &[f16],
        mn: &[f16],
        xs: &[f32],
        xsum: &[f32],
        out: &mut [f32],
    ) {
        q4_1_plain::<R>(q, sc, mn, xs, xsum, out)
    }
    fn q8_0<const R: usize>(q: &[i8], sc: &[f16], xs: &[f32], out: &mut [f32]) {
        q8_0_plain::<R>(q, sc, xs, out)
    }
    fn f32_rows<const R: usize>(row: &[f32], xs: &[f32], out: &mut [f32]) {
        f32_plain::<false, R>(row, xs, out)
    }
}

#[inline(always)]
fn rows_tiled<K: Kernels>(
    w: &Blocks,
    nb: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    xsum: &[f32],
    m: usize,
    dst: &mut [f32],
) {
    let k = nb * QK;
    for (r, out) in rows.zip(dst.chunks_exact_mut(m)) {
        let blocks = r * nb..(r + 1) * nb;
        let mut t0 = 0;
        while t0 < m {
            let n = match m - t0 {
                r if r >= TILE => TILE,
                r if r >= 4 => 4,
                r if r >= 2 => 2,
                _ => 1,
            };
            let xs = &x[t0 * k..(t0 + n) * k];
            let o = &mut out[t0..t0 + n];
            match w {
                Blocks::Q4_1 {
                    scales,
                    mins,
                    nibbles,
                } => {
                    let stride = nb.next_multiple_of(GROUP);
                    let s = &xsum[t0 * stride..(t0 + n) * stride];
                    let (sc, mn) = (&scales[blocks.clone()], &mins[blocks.clone()]);
                    let q = &nibbles[blocks.start * 16..blocks.end * 16];
                    match n {
                        8 => K::q4_1::<8>(q, sc, mn, xs, s, o),
                        4 => K::q4_1::<4>(q, sc, mn, xs, s, o),
                        2 => K::q4_1::<2>(q, sc, mn, xs, s, o),
                        _ => K::q4_1::<1>(q, sc, mn, xs, s, o),
                    }
                }
                Blocks::Q8_0 { scales, quants } => {
                    let sc = &scales[blocks.clone()];
                    let q = &quants[blocks.start * QK..blocks.end * QK];
                    match n {
                        8 => K::q8_0::<8>(q, sc, xs, o),
                        4 => K::q8_0::<4>(q, sc, xs, o),
                        2 => K::q8_0::<2>(q, sc, xs, o),
                        _ => K::q8_0::<1>(q, sc, xs, o),
                    }
                }
                Blocks::F32(wf) => {
                    let row = &wf[blocks.start * QK..blocks.end * QK];
                    match n {
                        8 => K::f32_rows::<8>(row, xs, o),
                        4 => K::f32_rows::<4>(row, xs, o),
                        2 => K::f32_rows::<2>(row, xs, o),
                        _ => K::f32_rows::<1>(row, xs, o),
                    }
                }
            }
            t0 += n;
        }
    }
}

/// `Σ mins · block sums` of activation row `r`: the Q4_1 minimums' share.
fn minimums(mn: &[f16], xsum: &[f32], r: usize) -> f32 {
    let stride = mn.len().next_multiple_of(GROUP);
    mn.iter()
        .zip(&xsum[r * stride..])
        .map(|(m, s)| m.to_f32() * s)
        .sum()
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Sums 16 lanes pairwise (the plain kernels' reduction).
#[inline(always)]
fn hsum(v: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = v[i] + v[i + 8];
    }
    let mut q = [0f32; 4];
    for i in 0..4 {
        q[i] = h[i] + h[i + 4];
    }
    (q[0] + q[2]) + (q[1] + q[3])
}

/// One Q4_1 weight row (blocks `q`, `sc`, `mn`) against `R` activation rows.
fn q4_1_plain<const R: usize>(
    q: &[u8],
    sc: &[f16],
    mn: &[f16],
    xs: &[f32],
    xsum: &[f32],
    out: &mut [f32],
) {
    let nb = sc.len();
    let k = nb * QK;
    let mut acc = [[0f32; 16]; R];
    for (b, (qb, d)) in q.chunks_exact(16).zip(sc).enumerate() {
        let d = d.to_f32();
        let mut lo = [0f32; 16];
        let mut hi = [0f32; 16];
        for i in 0..16 {
            lo[i] = (qb[i] & 15) as f32 * d;
            hi[i] = (qb[i] >> 4) as f32 * d;
        }
        for (r, a) in acc.iter_mut().enumerate() {
            let xb = &xs[r * k + b * QK..r * k + b * QK + QK];
            for i in 0..16 {
                a[i] += lo[i] * xb[i];
            }
            for i in 0..16 {
                a[i] += hi[i] * xb[16 + i];
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[r] = hsum(a) + minimums(mn, xsum, r);
    }
}

/// One Q8_0 weight row against `R` activation rows.
fn q8_0_plain<const R: usize>(q: &[i8], sc: &[f16], xs: &[f32], out: &mut [f32]) {
    let k = sc.len() * QK;
    let mut acc = [[0f32; 16]; R];
    for (b, (qb, d)) in q.chunks_exact(QK).zip(sc).enumerate() {
        let d = d.to_f32();
        let mut wv = [0f32; QK];
        for i in 0..QK {
            wv[i] = qb[i] as f32 * d;
        }
        for (r, a) in acc.iter_mut().enumerate() {
            let xb = &xs[r * k + b * QK..r * k + b * QK + QK];
            for i in 0..16 {
                a[i] += wv[i] * xb[i];
            }
            for i in 0..16 {
                a[i] += wv[16 + i] * xb[16 + i];
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[r] = hsum(a);
    }
}

/// One F32 weight row against `R` activation rows (lane-wise, so that it
/// vectorises under each variant's target features).
#[inline(always)]
fn f32_plain<const FMA: bool, const R: usize>(row: &[f32], xs: &[f32], out: &mut [f32]) {
    let k = row.len();
    let mut acc = [[0f32; 16]; R];
    for (b, wb) in row.chunks_exact(16).enumerate() {
        for (r, a) in acc.iter_mut().enumerate() {
            let xb = &xs[r * k + b * 16..r * k + b * 16 + 16];
            for i in 0..16 {
                a[i] = madd::<FMA>(wb[i], xb[i], a[i]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[r] = hsum(a);
    }
}

/// AVX2 and AVX-512 kernels. Every function checks the lengths of the
/// slices it reads before any unchecked load, so the loads stay in bounds.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f32_plain, Kernels, GROUP, QK};
    use half::f16;
    use std::arch::x86_64::*;

    /// Lengths every kernel relies on: `nb` blocks of weights (and scales)
    /// and `R` rows of `nb · 32` activations.
    #[inline(always)]
    fn check<const R: usize>(nb: usize, bytes: usize, per_block: usize, xs: &[f32], out: &[f32]) {
        assert!(bytes == nb * per_block && xs.len() == R * nb * QK && out.len() >= R);
    }

    /// Bytes ahead of the block being read that are prefetched: the
    /// hardware prefetcher alone left decoding waiting on memory (prefetching
    /// 2 KiB ahead took it from 92 to about 145 tokens/s on the benchmark
    /// machine).
    const PREFETCH: usize = 2048;

    pub(super) struct Avx512;

    /// `f` with AVX-512 enabled (see [`super::Isa::run`]).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// `f` with AVX2 enabled (see [`super::Isa::run`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Halves `h[g..g + 16]` (fewer at the end, the rest zero) widened.
    /// Caller: AVX-512F/BW/VL enabled.
    #[inline(always)]
    unsafe fn widen16(h: &[f16], g: usize) -> __m512 {
        let n = h.len().saturating_sub(g).min(GROUP);
        let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: lanes n.. are masked off and not read; lanes ..n are
        // h[g..g + n], in bounds.
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
            mask,
            h.as_ptr().wrapping_add(g) as *const i16,
        ))
    }

    /// Lanes of `v` as an array.
    #[inline(always)]
    unsafe fn lanes(v: __m512) -> [f32; 16] {
        let mut out = [0f32; 16];
        _mm512_storeu_ps(out.as_mut_ptr(), v);
        out
    }

    /// Adds one block, its 32 weights widened to `w` and scaled by `d`, times
    /// the block of each of the `R` activation rows (the first at `x`, the
    /// next `k` further) to `acc`. The weights are widened once for every
    /// row; with one row (decoding) the block's two halves are summed first
    /// and scaled once: three operations per block instead of four.
    /// Caller: AVX-512F enabled, `x` valid for `R` rows of `k`.
    #[inline(always)]
    unsafe fn block<const R: usize>(
        acc: &mut [[__m512; 2]; R],
        w: [__m512; 2],
        d: f32,
        x: *const f32,
        k: usize,
    ) {
        let d = _mm512_set1_ps(d);
        if R == 1 {
            let t = _mm512_fmadd_ps(
                w[1],
                _mm512_loadu_ps(x.add(16)),
                _mm512_mul_ps(w[0], _mm512_loadu_ps(x)),
            );
            acc[0][0] = _mm512_fmadd_ps(t, d, acc[0][0]);
        } else {
            let (w0, w1) = (_mm512_mul_ps(w[0], d), _mm512_mul_ps(w[1], d));
            for (r, a) in acc.iter_mut().enumerate() {
                let xp = x.add(r * k);
                a[0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp), a[0]);
                a[1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(16)), a[1]);
            }
        }
    }

    /// The sum of each row's accumulators into `out`.
    /// Caller: AVX-512F enabled.
    #[inline(always)]
    unsafe fn reduce<const R: usize>(acc: &[[__m512; 2]; R], out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(acc) {
            *o = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
        }
    }

    impl Kernels for Avx512 {
        #[inline(always)]
        fn q4_1<const R: usize>(
            q: &[u8],
            sc: &[f16],
            mn: &[f16],
            xs: &[f32],
            xsum: &[f32],
            out: &mut [f32],
        ) {
            let nb = sc.len();
            check::<R>(nb, q.len(), 16, xs, out);
            let stride = nb.next_multiple_of(GROUP);
            assert!(mn.len() == nb && xsum.len() == R * stride);
            let k = nb * QK;
            // SAFETY: only called from rows_avx512 (AVX-512F/BW/VL, FMA and
            // F16C enabled, checked at run time); the loads read inside q
            // (16 bytes per block), xs (k per row), xsum (stride per row, a
            // multiple of 16) and stack arrays, as asserted above.
            unsafe {
                let low = _mm512_set1_epi32(0x0F);
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                for g in (0..nb).step_by(GROUP) {
                    let n = (nb - g).min(GROUP);
                    let ds = lanes(widen16(sc, g));
                    let mv = widen16(mn, g);
                    for (r, a) in acc.iter_mut().enumerate() {
                        a[0] = _mm512_fmadd_ps(
                            mv,
                            _mm512_loadu_ps(xsum.as_ptr().add(r * stride + g)),
                            a[0],
                        );
                    }
                    for (i, &d) in ds.iter().enumerate().take(n) {
                        let b = g + i;
                        _mm_prefetch::<_MM_HINT_T0>(
                            q.as_ptr().wrapping_add(b * 16 + PREFETCH) as *const i8
                        );
                        let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                            q.as_ptr().add(b * 16) as *const __m128i
                        ));
                        let lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, low));
                        let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
                        block(&mut acc, [lo, hi], d, xs.as_ptr().add(b * QK), k);
                    }
                }
                reduce(&acc, out);
            }
        }

        #[inline(always)]
        fn q8_0<const R: usize>(q: &[i8], sc: &[f16], xs: &[f32], out: &mut [f32]) {
            let nb = sc.len();
            check::<R>(nb, q.len(), QK, xs, out);
            let k = nb * QK;
            // SAFETY: as in q4_1; 32 bytes per block of q.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                for g in (0..nb).step_by(GROUP) {
                    let n = (nb - g).min(GROUP);
                    let ds = lanes(widen16(sc, g));
                    for (i, &d) in ds.iter().enumerate().take(n) {
                        let b = g + i;
                        _mm_prefetch::<_MM_HINT_T0>(q.as_ptr().wrapping_add(b * QK + PREFETCH));
                        let p = q.as_ptr().add(b * QK) as *const __m128i;
                        let w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p)));
                        let w1 =
                            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(1))));
                        block(&mut acc, [w0, w1], d, xs.as_ptr().add(b * QK), k);
                    }
                }
                reduce(&acc, out);
            }
        }

        #[inline(always)]
        fn f32_rows<const R: usize>(row: &[f32], xs: &[f32], out: &mut [f32]) {
            f32_plain::<true, R>(row, xs, out)
        }
    }

    pub(super) struct Avx2;

    /// Sum of the 8 lanes.
    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The low eight bytes of `v` as F32 lanes, zero-extended.
    #[inline(always)]
    unsafe fn widen_u8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    /// The low eight bytes of `v` as F32 lanes, sign-extended.
    #[inline(always)]
    unsafe fn widen_i8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
    }

    /// Halves `h[g..g + 8]` (fewer at the end, the rest zero) as F32
    /// lanes. Caller: AVX2 and F16C enabled.
    #[inline(always)]
    unsafe fn halves8(h: &[f16], g: usize) -> __m256 {
        let mut b = [f16::ZERO; 8];
        let v = match h.get(g..g + 8) {
            Some(full) => full,
            None => {
                let rest = &h[g.min(h.len())..];
                b[..rest.len()].copy_from_slice(rest);
                &b
            }
        };
        _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr() as *const __m128i))
    }

    /// Adds one block, its 32 weights widened to `w` and scaled by `d`, times
    /// the block of each of the `R` activation rows (the first at `x`, the
    /// next `k` further) to `acc`.
    /// Caller: AVX2 and FMA enabled, `x` valid for `R` rows of `k`.
    #[inline(always)]
    unsafe fn block8<const R: usize>(
        acc: &mut [__m256; R],
        w: [__m256; 4],
        d: __m256,
        x: *const f32,
        k: usize,
    ) {
        let w = w.map(|v| _mm256_mul_ps(v, d));
        for (r, a) in acc.iter_mut().enumerate() {
            let xp = x.add(r * k);
            for (j, wj) in w.iter().enumerate() {
                *a = _mm256_fmadd_ps(*wj, _mm256_loadu_ps(xp.add(8 * j)), *a);
            }
        }
    }

    /// Lane `i` of `v` in every lane.
    #[inline(always)]
    unsafe fn lane(v: __m256, i: usize) -> __m256 {
        _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(i as i32))
    }

    impl Kernels for Avx2 {
        #[inline(always)]
        fn q4_1<const R: usize>(
            q: &[u8],
            sc: &[f16],
            mn: &[f16],
            xs: &[f32],
            xsum: &[f32],
            out: &mut [f32],
        ) {
            let nb = sc.len();
            check::<R>(nb, q.len(), 16, xs, out);
            let stride = nb.next_multiple_of(GROUP);
            assert!(mn.len() == nb && xsum.len() == R * stride);
            let k = nb * QK;
            // SAFETY: only called from rows_avx2 (AVX2, FMA and F16C
            // enabled, checked at run time); loads stay inside q, xs, xsum
            // (stride per row, a multiple of 8) and stack arrays, as
            // asserted above.
            unsafe {
                let mask = _mm_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); R];
                for g in (0..nb).step_by(8) {
                    let dv = halves8(sc, g);
                    let mv = halves8(mn, g);
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(
                            mv,
                            _mm256_loadu_ps(xsum.as_ptr().add(r * stride + g)),
                            *a,
                        );
                    }
                    for i in 0..(nb - g).min(8) {
                        let b = g + i;
                        _mm_prefetch::<_MM_HINT_T0>(
                            q.as_ptr().wrapping_add(b * 16 + PREFETCH) as *const i8
                        );
                        let bytes = _mm_loadu_si128(q.as_ptr().add(b * 16) as *const __m128i);
                        let lo = _mm_and_si128(bytes, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
                        let w = [
                            widen_u8(lo),
                            widen_u8(_mm_srli_si128(lo, 8)),
                            widen_u8(hi),
                            widen_u8(_mm_srli_si128(hi, 8)),
                        ];
                        block8(&mut acc, w, lane(dv, i), xs.as_ptr().add(b * QK), k);
                    }
                }
                for (o, a) in out.iter_mut().zip(&acc) {
                    *o = hsum256(*a);
                }
            }
        }

        #[inline(always)]
        fn q8_0<const R: usize>(q: &[i8], sc: &[f16], xs: &[f32], out: &mut [f32]) {
            let nb = sc.len();
            check::<R>(nb, q.len(), QK, xs, out);
            let k = nb * QK;
            // SAFETY: as in q4_1; 32 bytes per block of q.
            unsafe {
                let mut acc = [_mm256_setzero_ps(); R];
                for g in (0..nb).step_by(8) {
                    let dv = halves8(sc, g);
                    for i in 0..(nb - g).min(8) {
                        let b = g + i;
                        _mm_prefetch::<_MM_HINT_T0>(q.as_ptr().wrapping_add(b * QK + PREFETCH));
                        let p = q.as_ptr().add(b * QK) as *const __m128i;
                        let (v0, v1) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
                        let w = [
                            widen_i8(v0),
                            widen_i8(_mm_srli_si128(v0, 8)),
                            widen_i8(v1),
                            widen_i8(_mm_srli_si128(v1, 8)),
                        ];
                        block8(&mut acc, w, lane(dv, i), xs.as_ptr().add(b * QK), k);
                    }
                }
                for (o, a) in out.iter_mut().zip(&acc) {
                    *o = hsum256(*a);
                }
            }
        }

        #[inline(always)]
        fn f32_rows<const R: usize>(row: &[f32], xs: &[f32], out: &mut [f32]) {
            f32_plain::<true, R>(row, xs, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        let mut s = seed;
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Every format and kernel variant against a plain F32 product of the
    /// dequantised weights, with activations that include outliers.
    #[test]
    fn products_match_the_dequantised_weights() {
        // Widths of 1, 8, 17 and 18 blocks: whole and partial groups of
        // scales in both vector variants.
        for (dtype, cols) in [
            (GgmlDType::Q4_1, 256),
            (GgmlDType::Q4_1, 576),
            (GgmlDType::Q4_1, 544),
            (GgmlDType::Q4_1, 32),
            (GgmlDType::Q8_0, 256),
            (GgmlDType::Q8_0, 576),
            (GgmlDType::Q8_0, 32),
            (GgmlDType::F32, 96),
            (GgmlDType::Q4K, 256),
        ] {
            let rows = 70;
            let w = QTensor::quantize(&random((rows, cols), 1), dtype).unwrap();
            let wf = w
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let qm = QMatrix::from_qtensor(&w).unwrap();
            let expected_format = if dtype == GgmlDType::Q4K {
                "F32"
            } else {
                &format!("{dtype:?}")
            };
            assert_eq!(qm.format(), expected_format);
            for m in [1usize, 3, 4, 9, 16] {
                let mut x = random((m, cols), 7 + m as u64)
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                x[5] = 250.0;
                for isa in Isa::available() {
                    let mut out = vec![0f32; m * rows];
                    qm.matmul_with(isa, &x, m, &mut out);
                    for t in 0..m {
                        for r in 0..rows {
                            let want: f64 = (0..cols)
                                .map(|c| wf[r][c] as f64 * x[t * cols + c] as f64)
                                .sum();
                            let got = out[t * rows + r] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{dtype:?} {isa:?} m={m} t={t} r={r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn variants_agree_and_rows_dequantise() {
        let w = QTensor::quantize(&random((40, 64), 3), GgmlDType::Q4_1).unwrap();
        let qm = QMatrix::from_qtensor(&w).unwrap();
        let x = random((2, 64), 4)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let runs: Vec<Vec<f32>> = Isa::available()
            .into_iter()
            .map(|isa| {
                let mut out = vec![0f32; 80];
                qm.matmul_with(isa, &x, 2, &mut out);
                out
            })
            .collect();
        // The variants round differently (FMA, lane order); they agree to 1e-4.
        for r in &runs[1..] {
            for (a, b) in r.iter().zip(&runs[0]) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
        let full = w
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            qm.dequantize_rows(3..5),
            [full[3].clone(), full[4].clone()].concat()
        );
    }

    #[test]
    fn stacking_keeps_rows_in_order_and_mixed_formats_widen() {
        let a = QTensor::quantize(&random((32, 64), 5), GgmlDType::Q4_1).unwrap();
        let b = QTensor::quantize(&random((8, 64), 6), GgmlDType::Q4_1).unwrap();
        let c = QTensor::quantize(&random((8, 64), 7), GgmlDType::Q8_0).unwrap();
        let (qa, qb, qc) = (
            QMatrix::from_qtensor(&a).unwrap(),
            QMatrix::from_qtensor(&b).unwrap(),
            QMatrix::from_qtensor(&c).unwrap(),
        );
        let ab = QMatrix::stack(&[qa.clone(), qb.clone()]).unwrap();
        assert_eq!((ab.rows(), ab.format()), (40, "Q4_1"));
        assert_eq!(ab.dequantize_rows(32..40), qb.dequantize_rows(0..8));
        let abc = QMatrix::stack(&[qa, qb, qc.clone()]).unwrap();
        assert_eq!((abc.rows(), abc.format()), (48, "F32"));
        assert_eq!(abc.dequantize_rows(40..48), qc.dequantize_rows(0..8));
        let wide = QMatrix::from_qtensor(
            &QTensor::quantize(&random((4, 32), 8), GgmlDType::Q4_1).unwrap(),
        )
        .unwrap();
        assert!(QMatrix::stack(&[ab, wide]).is_err());
    }
}
