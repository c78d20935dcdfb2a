//! Method labels for metrics, bounded whatever clients send.

/// The bounded set of method labels for metrics: known methods, then `other`.
#[derive(Debug, Clone, Copy)]
pub struct MethodLabels {
    known: &'static [&'static str],
}

impl MethodLabels {
    pub fn new(known: &'static [&'static str]) -> Self {
        Self { known }
    }

    /// Number of distinct labels, `other` included.
    pub fn len(&self) -> usize {
        self.known.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index of the method's label in `0..len()`.
    pub fn index(&self, method: &str) -> usize {
        self.known
            .binary_search(&method)
            .unwrap_or(self.known.len())
    }

    pub fn label(&self, index: usize) -> &'static str {
        self.known.get(index).copied().unwrap_or("other")
    }
}
