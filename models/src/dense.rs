//! Dense layers for the BERT encoder: `y = x·Wᵀ + b` with F32 activations.
//!
//! Two backends, picked once at run time ([`Backend::detect`]):
//! - [`Backend::Amx`]: Intel AMX tiles. Weights are stored as BF16 in the
//!   tile layout the `TDPBF16PS` instruction reads; activations are rounded
//!   to BF16 row block by row block; products accumulate in F32.
//! - [`Backend::F32`]: plain F32 through the `gemm` crate (AVX-512/AVX2
//!   microkernels picked at run time), on any CPU.
//!
//! Rows are processed in blocks of [`ROW_BLOCK`]; callers pad their row count
//! to a multiple of it.

use rayon::prelude::*;

use crate::quant::Isa;

/// Rows per block: activations must have a multiple of this many rows.
pub(crate) const ROW_BLOCK: usize = 32;

/// How a [`Dense`] layer multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// BF16 weights and activations on Intel AMX tiles, F32 accumulation.
    Amx,
    /// F32 throughout.
    F32,
}

impl Backend {
    /// The fastest backend this CPU and kernel allow: AMX when the CPU has
    /// AMX-BF16 and the kernel grants this process the tile state, else F32.
    pub fn detect() -> Backend {
        if amx::usable() {
            Backend::Amx
        } else {
            Backend::F32
        }
    }

    /// Every backend this machine can run, F32 first.
    pub fn available() -> Vec<Backend> {
        let mut all = vec![Backend::F32];
        if amx::usable() {
            all.push(Backend::Amx);
        }
        all
    }

    /// Name for reports: `amx-bf16` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Amx => "amx-bf16",
            Backend::F32 => "f32",
        }
    }
}

/// A linear layer with `n` outputs over `k` inputs.
pub(crate) struct Dense {
    n: usize,
    k: usize,
    bias: Vec<f32>,
    weights: Weights,
}

enum Weights {
    /// Row-major `n × k`, as stored in the checkpoint.
    F32(Vec<f32>),
    /// BF16 tiles, see [`amx::pack`].
    Tiles(Vec<u16>),
}

impl Dense {
    /// `w` is row-major `n × k` (PyTorch's `Linear.weight`), `bias` has `n`
    /// entries. AMX needs `k` and `n` to be multiples of 32; other shapes
    /// stay F32 whatever the backend.
    pub(crate) fn new(w: Vec<f32>, bias: Vec<f32>, n: usize, k: usize, backend: Backend) -> Dense {
        assert_eq!(w.len(), n * k, "weight shape");
        assert_eq!(bias.len(), n, "bias shape");
        let weights = if backend == Backend::Amx && amx::fits(n, k) {
            Weights::Tiles(amx::pack(&w, n, k))
        } else {
            Weights::F32(w)
        };
        Dense {
            n,
            k,
            bias,
            weights,
        }
    }

    /// Outputs per row.
    pub(crate) fn outputs(&self) -> usize {
        self.n
    }

    /// `out[m × n] = x[m × k]·Wᵀ + b`, `m` a multiple of [`ROW_BLOCK`];
    /// `then` runs on pieces of the output while they are in cache, so it
    /// must treat each element on its own (an activation function).
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], then: impl Fn(&mut [f32]) + Sync) {
        let m = x.len() / self.k;
        assert!(
            x.len() == m * self.k && out.len() == m * self.n && m.is_multiple_of(ROW_BLOCK),
            "dense shapes: x {} out {} for {}×{}",
            x.len(),
            out.len(),
            self.n,
            self.k
        );
        match &self.weights {
            Weights::F32(w) => {
                // SAFETY: the lengths checked above make every element gemm
                // addresses lie inside x (m×k, row stride k), w (n×k read as
                // the k×n matrix Wᵀ, column stride k) and out (m×n, row
                // stride n); out does not alias the inputs (&mut).
                unsafe {
                    gemm::gemm(
                        m,
                        self.n,
                        self.k,
                        out.as_mut_ptr(),
                        1,
                        self.n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        self.k as isize,
                        w.as_ptr(),
                        self.k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(rayon::current_num_threads()),
                    )
                }
                out.par_chunks_mut(self.n * ROW_BLOCK).for_each(|rows| {
                    Isa::detect().run(
                        #[inline(always)]
                        || {
                            for row in rows.chunks_exact_mut(self.n) {
                                for (y, b) in row.iter_mut().zip(&self.bias) {
                                    *y += b;
                                }
                            }
                            then(rows);
                        },
                    )
                });
            }
            Weights::Tiles(tiles) => amx::product(tiles, &self.bias, self.n, self.k, x, out, &then),
        }
    }
}

/// Rounds to the nearest BF16, ties to even (inputs are finite).
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

#[cfg(target_arch = "x86_64")]
mod amx {
    //! Intel AMX through inline assembly (the `std::arch` AMX intrinsics are
    //! not stable). Eight tiles of 16 rows × 64 bytes: four accumulate a
    //! 32×32 block of outputs, two hold activation rows, two weight columns.

    use super::{bf16, Isa, ROW_BLOCK};
    use rayon::prelude::*;
    use std::arch::asm;
    use std::sync::OnceLock;

    /// Tile bytes: 16 rows of 64 bytes (32 BF16 or 16 F32).
    const TILE: usize = 1024;

    /// Whether the CPU has AMX-BF16 (and AVX-512, which every CPU with AMX
    /// has) and Linux lets this process use the tile registers (asked once;
    /// permission is per process).
    pub(super) fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
            let leaf = std::arch::x86_64::__cpuid_count(7, 0);
            if leaf.edx & (1 << 22) == 0
                || leaf.edx & (1 << 24) == 0
                || Isa::detect() != Isa::Avx512
            {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only changes which
            // register state the kernel saves for this process.
            let granted = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            granted == 0
        })
    }

    pub(super) fn fits(n: usize, k: usize) -> bool {
        n.is_multiple_of(32) && k.is_multiple_of(32) && n > 0 && k > 0
    }

    /// Lays `w` (row-major `n × k`) out as tiles: for each group of 16
    /// outputs and 32 inputs, one tile whose row `r` holds, for each of the
    /// 16 outputs, the BF16 pair of inputs `2r` and `2r + 1` (the layout
    /// `TDPBF16PS` reads its second operand in). Tiles of one output group
    /// follow each other along `k`.
    pub(super) fn pack(w: &[f32], n: usize, k: usize) -> Vec<u16> {
        let mut tiles = vec![0u16; n * k];
        let mut at = 0;
        for group in 0..n / 16 {
            for kb in 0..k / 32 {
                for r in 0..16 {
                    for c in 0..16 {
                        let row = &w[(group * 16 + c) * k + kb * 32 + 2 * r..];
                        tiles[at] = bf16(row[0]);
                        tiles[at + 1] = bf16(row[1]);
                        at += 2;
                    }
                }
            }
        }
        tiles
    }

    /// `out[m × n] = x[m × k]·Wᵀ + bias`, then `then` on every output.
    ///
    /// Each task takes a block of [`ROW_BLOCK`] rows, rounds them to BF16
    /// and runs across all columns, so the block's activations stay in L1
    /// while the weights stream past. The accumulators start from the bias
    /// (a tile load with row stride 0 repeats it on all 16 rows).
    pub(super) fn product(
        tiles: &[u16],
        bias: &[f32],
        n: usize,
        k: usize,
        x: &[f32],
        out: &mut [f32],
        then: &(impl Fn(&mut [f32]) + Sync),
    ) {
        let m = x.len() / k;
        assert!(
            usable()
                && fits(n, k)
                && tiles.len() == n * k
                && bias.len() == n
                && x.len() == m * k
                && m.is_multiple_of(ROW_BLOCK)
                && out.len() == m * n,
            "AMX product shapes"
        );
        out.par_chunks_mut(ROW_BLOCK * n)
            .zip(x.par_chunks(ROW_BLOCK * k))
            .for_each(|(out, x)| {
                Isa::detect().run(
                    #[inline(always)]
                    || {
                        let a: Vec<u16> = x.iter().map(|&v| bf16(v)).collect();
                        // SAFETY: as checked above, the CPU and kernel allow
                        // AMX and the block's shapes fit.
                        unsafe { block(tiles, bias, n, k, &a, out) };
                        then(out);
                    },
                )
            });
    }

    /// `out[32 × n] = a[32 × k]·Wᵀ + bias` for one block of rows.
    ///
    /// # Safety
    /// AMX must be usable; `a` is `32 × k` BF16, `tiles` `n × k` BF16,
    /// `bias` `n`, `out` `32 × n`, with `n` and `k` multiples of 32.
    unsafe fn block(tiles: &[u16], bias: &[f32], n: usize, k: usize, a: &[u16], out: &mut [f32]) {
        let mut config = [0u8; 64];
        config[0] = 1; // palette 1
        for t in 0..8 {
            config[16 + 2 * t] = 64; // bytes per row
            config[48 + t] = 16; // rows
        }
        let a_stride = k * 2;
        let out_stride = n * 4;
        let steps = k / 32;
        // SAFETY (of every access below): activation tiles read rows 0..16
        // and 16..32 of `a` at column kb·32 < k; weight tiles read whole
        // 1 KiB tiles of groups 2·pair and 2·pair + 1 < n/16; bias loads read
        // 16 F32 at pair·32 (+16) < n; stores write 16 rows × 16 F32 at
        // columns pair·32 (+16) of `out`, rows 0..16 and 16..32.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) config.as_ptr(), options(nostack, readonly));
            let a_lo = a.as_ptr();
            let a_hi = a_lo.add(16 * k);
            let o_lo = out.as_mut_ptr();
            let o_hi = o_lo.add(16 * n);
            for pair in 0..n / 32 {
                let w0 = tiles.as_ptr().add(2 * pair * steps * TILE / 2);
                let w1 = w0.add(steps * TILE / 2);
                let b0 = bias.as_ptr().add(pair * 32);
                asm!(
                    "tileloadd tmm0, [{b0} + {zero}*1]",
                    "tileloadd tmm1, [{b1} + {zero}*1]",
                    "tileloadd tmm2, [{b0} + {zero}*1]",
                    "tileloadd tmm3, [{b1} + {zero}*1]",
                    b0 = in(reg) b0,
                    b1 = in(reg) b0.add(16),
                    zero = in(reg) 0usize,
                    options(nostack, readonly)
                );
                for kb in 0..steps {
                    asm!(
                        "tileloadd tmm4, [{a0} + {sa}*1]",
                        "tileloadd tmm5, [{a1} + {sa}*1]",
                        "tileloadd tmm6, [{w0} + {sw}*1]",
                        "tileloadd tmm7, [{w1} + {sw}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a_lo.add(kb * 32),
                        a1 = in(reg) a_hi.add(kb * 32),
                        w0 = in(reg) w0.add(kb * TILE / 2),
                        w1 = in(reg) w1.add(kb * TILE / 2),
                        sa = in(reg) a_stride,
                        sw = in(reg) 64usize,
                        options(nostack, readonly)
                    );
                }
                asm!(
                    "tilestored [{o0} + {so}*1], tmm0",
                    "tilestored [{o1} + {so}*1], tmm1",
                    "tilestored [{o2} + {so}*1], tmm2",
                    "tilestored [{o3} + {so}*1], tmm3",
                    o0 = in(reg) o_lo.add(pair * 32),
                    o1 = in(reg) o_lo.add(pair * 32 + 16),
                    o2 = in(reg) o_hi.add(pair * 32),
                    o3 = in(reg) o_hi.add(pair * 32 + 16),
                    so = in(reg) out_stride,
                    options(nostack)
                );
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    //! AMX exists only on x86-64.

    pub(super) fn usable() -> bool {
        false
    }

    pub(super) fn fits(_n: usize, _k: usize) -> bool {
        false
    }

    pub(super) fn pack(_w: &[f32], _n: usize, _k: usize) -> Vec<u16> {
        unreachable!("AMX is never usable off x86-64")
    }

    pub(super) fn product(
        _tiles: &[u16],
        _bias: &[f32],
        _n: usize,
        _k: usize,
        _x: &[f32],
        _out: &mut [f32],
        _then: &(impl Fn(&mut [f32]) + Sync),
    ) {
        unreachable!("AMX is never usable off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The product in f64, for reference, with the sum of the magnitudes of
    /// its terms (which bounds the rounding error).
    fn reference(x: &[f32], w: &[f32], b: &[f32], n: usize, k: usize) -> Vec<(f64, f64)> {
        x.chunks(k)
            .flat_map(|row| {
                (0..n).map(move |j| {
                    let terms = (0..k).map(|i| row[i] as f64 * w[j * k + i] as f64);
                    let dot: f64 = terms.clone().sum();
                    let size: f64 = terms.map(f64::abs).sum();
                    (dot + b[j] as f64, size)
                })
            })
            .collect()
    }

    #[test]
    fn every_backend_matches_the_reference_product() {
        // 96 rows (three blocks); shapes AMX takes and shapes it leaves to F32.
        for (n, k) in [(64, 32), (96, 384), (32, 1536), (40, 24)] {
            let m = 3 * ROW_BLOCK;
            let mut x = random(m * k, 1);
            x[5] = 40.0; // an outlier, as BERT activations have
            let w = random(n * k, 2);
            let b = random(n, 3);
            let want = reference(&x, &w, &b, n, k);
            for backend in Backend::available() {
                let dense = Dense::new(w.clone(), b.clone(), n, k, backend);
                assert_eq!(dense.outputs(), n);
                let mut got = vec![f32::NAN; m * n];
                dense.forward(&x, &mut got, |_| {});
                // Rounding both factors to BF16 (8 bits) moves each term by
                // at most 2⁻⁸ of its size; F32 by far less.
                let rel = match (backend, amx::fits(n, k)) {
                    (Backend::Amx, true) => 1.0 / 256.0,
                    _ => 1e-5,
                };
                for (i, (g, (w, size))) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() <= rel * size + 1e-6,
                        "{} {n}×{k} at {i}: {g} vs {w}",
                        backend.name()
                    );
                }
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to even (1).
        assert_eq!(bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: up to even.
        assert_eq!(bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16(-2.0), 0xc000);
    }
}
