//! The KV cache of one sequence: per layer, keys and values as [P, KVH, D]
//! row-major, so a step appends its rows at the end with no re-layout.
//! Capacity is fixed at creation (the context limit) and allocated then.

#[derive(Debug, Clone)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    row: usize,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// `row` = kv_heads * head_dim. Each layer's buffers are allocated once
    /// for `capacity` positions, so they never move or get copied while the
    /// sequence grows (a backend reads and writes them in place); the pages
    /// are only touched as positions are written.
    pub fn new(layers: usize, row: usize, capacity: usize) -> KvCache {
        let buf = || {
            (0..layers)
                .map(|_| Vec::with_capacity(capacity * row))
                .collect()
        };
        KvCache {
            k: buf(),
            v: buf(),
            row,
            len: 0,
            capacity,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn layers(&self) -> usize {
        self.k.len()
    }
    /// Floats per position and layer (kv_heads * head_dim).
    pub fn row(&self) -> usize {
        self.row
    }
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Bytes a cache of `positions` takes for this shape.
    pub fn bytes_for(layers: usize, row: usize, positions: usize) -> usize {
        2 * layers * row * positions * 4
    }

    pub fn past(&self, layer: usize) -> (&[f32], &[f32]) {
        let n = self.len * self.row;
        (&self.k[layer][..n], &self.v[layer][..n])
    }

    /// Append `t` new positions for a layer (before `commit`).
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        debug_assert_eq!(k.len(), v.len());
        debug_assert_eq!(k.len() % self.row, 0);
        self.k[layer].truncate(self.len * self.row);
        self.v[layer].truncate(self.len * self.row);
        self.k[layer].extend_from_slice(k);
        self.v[layer].extend_from_slice(v);
    }

    /// A layer's past and room for `t` new positions right after it, for a
    /// backend to write in place (then `commit`).
    pub fn past_and_next(
        &mut self,
        layer: usize,
        t: usize,
    ) -> (&[f32], &[f32], &mut [f32], &mut [f32]) {
        let (n, m) = (self.len * self.row, (self.len + t) * self.row);
        for buf in [&mut self.k[layer], &mut self.v[layer]] {
            buf.truncate(n);
            buf.resize(m, 0.0);
        }
        let (pk, nk) = self.k[layer].split_at_mut(n);
        let (pv, nv) = self.v[layer].split_at_mut(n);
        (pk, pv, nk, nv)
    }

    /// Make `t` appended positions part of the past.
    pub fn commit(&mut self, t: usize) {
        self.len += t;
        debug_assert!(self.len <= self.capacity);
    }

    /// Forget positions from `len` on (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_commit_truncate() {
        let mut kv = KvCache::new(2, 4, 8);
        kv.append(0, &[1.0; 8], &[2.0; 8]);
        kv.append(1, &[3.0; 8], &[4.0; 8]);
        kv.commit(2);
        assert_eq!(kv.len(), 2);
        assert_eq!(kv.past(1).0.len(), 8);
        // an uncommitted append is replaced by the next one
        kv.append(0, &[5.0; 4], &[5.0; 4]);
        kv.append(0, &[6.0; 4], &[6.0; 4]);
        kv.append(1, &[6.0; 4], &[6.0; 4]);
        kv.commit(1);
        assert_eq!(kv.past(0).0[8..], [6.0; 4]);
        kv.truncate(1);
        assert_eq!(kv.past(0).0.len(), 4);
        assert_eq!(kv.remaining(), 7);
        // room written in place, then committed
        let (pk, _, nk, nv) = kv.past_and_next(0, 2);
        assert_eq!(pk, &[1.0; 4]);
        nk.fill(7.0);
        nv.fill(8.0);
        kv.past_and_next(1, 2).2.fill(9.0);
        kv.commit(2);
        assert_eq!(kv.past(0).0[4..], [7.0; 8]);
        assert_eq!(kv.past(0).1[4..], [8.0; 8]);
        assert_eq!(kv.past(1).0[4..], [9.0; 8]);
    }
}
