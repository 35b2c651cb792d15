//! A top-k collector with a total order: score descending, then id ascending.
//!
//! tantivy's `TopDocs` breaks ties by document address, which changes when
//! segments merge, so equal scores could come back in a different order (or,
//! at the cut-off, as a different set) from one commit to the next. Within a
//! segment, the id's ordinal in the fast-field dictionary sorts like the id
//! itself, so each segment keeps its best `limit` by `(score, ordinal)` exactly,
//! reading only the ordinal column. Across segments the caller compares the
//! few survivors by id (see `Index::top`). It keeps tantivy's pruning
//! (block-WAND for plain term unions), lowering the threshold by one ulp so
//! that documents tying the current worst score are still offered.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

/// A document that may make the top: one of its segment's best.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub(crate) score: Score,
    pub(crate) addr: DocAddress,
}

/// Collects the best `limit` documents; `id_field` must be a FAST text field.
pub(crate) struct TopById {
    pub(crate) limit: usize,
    pub(crate) id_field: &'static str,
}

/// A candidate inside one segment. Its `Ord` puts the worst candidate on top
/// of the (max-)heap: lower score, then higher id ordinal, is "greater".
#[derive(Clone, Copy)]
struct Candidate {
    score: Score,
    ord: u64,
    doc: DocId,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.ord.cmp(&other.ord))
            .then_with(|| self.doc.cmp(&other.doc))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// Per-segment state of [`TopById`].
pub(crate) struct SegmentTop {
    segment: SegmentOrdinal,
    ords: Column<u64>,
    limit: usize,
    heap: BinaryHeap<Candidate>,
}

/// The largest score strictly below `x`, so that a pruning threshold of
/// `below(x)` still lets documents scoring exactly `x` through.
fn below(x: Score) -> Score {
    if x.is_nan() || x == Score::NEG_INFINITY {
        x
    } else if x > 0.0 {
        Score::from_bits(x.to_bits() - 1)
    } else if x == 0.0 {
        -Score::from_bits(1)
    } else {
        Score::from_bits(x.to_bits() + 1)
    }
}

impl SegmentTop {
    fn offer(&mut self, doc: DocId, score: Score) {
        let ord = self.ords.first(doc).unwrap_or(u64::MAX);
        let c = Candidate { score, ord, doc };
        if self.heap.len() < self.limit {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    fn threshold(&self) -> Score {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.limit => below(worst.score),
            _ => Score::MIN,
        }
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = Vec<Found>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.offer(doc, score);
    }

    fn harvest(self) -> Vec<Found> {
        let segment = self.segment;
        self.heap
            .into_iter()
            .map(|c| Found {
                score: c.score,
                addr: DocAddress::new(segment, c.doc),
            })
            .collect()
    }
}

impl Collector for TopById {
    /// Each segment's best, unordered; ties across segments are for the caller.
    type Fruit = Vec<Found>;
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let ids: StrColumn = reader.fast_fields().str(self.id_field)?.ok_or_else(|| {
            TantivyError::SchemaError(format!("`{}` is not a fast text field", self.id_field))
        })?;
        Ok(SegmentTop {
            segment,
            ords: ids.ords().clone(),
            limit: self.limit,
            heap: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<Found>> {
        let mut top = self.for_segment(segment, reader)?;
        if self.limit > 0 {
            let alive = reader.alive_bitset();
            weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    top.offer(doc, score);
                }
                top.threshold()
            })?;
        }
        Ok(top.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Found>>) -> tantivy::Result<Vec<Found>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_the_next_smaller_float() {
        for x in [1.0f32, 0.5, 3.75e-3, 1e30, -2.0] {
            let b = below(x);
            assert!(b < x, "{b} < {x}");
            assert_eq!(b.to_bits().abs_diff(x.to_bits()), 1);
        }
        assert!(below(0.0) < 0.0);
        assert_eq!(below(Score::NEG_INFINITY), Score::NEG_INFINITY);
    }

    #[test]
    fn worst_candidate_is_greatest() {
        let c = |score, ord| Candidate { score, ord, doc: 0 };
        assert!(c(1.0, 5) > c(2.0, 9), "lower score is worse");
        assert!(c(1.0, 5) > c(1.0, 4), "same score: higher id is worse");
    }
}
