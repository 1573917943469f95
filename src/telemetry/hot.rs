//! The hottest products by reservations in a sliding window, in bounded
//! memory, for the `inventory_hot_product_reservations` gauge.
//!
//! Counts are kept for two windows, the current one and the one before;
//! a product's figure is the sum of both, so it covers between one and two
//! windows of reservations. At most `capacity` products are counted per
//! window: a new product when the window is full takes the place of the
//! least counted one, starting from that count (the space-saving
//! algorithm of Metwally, Agrawal and El Abbadi), so a product reserved
//! often is never lost among many reserved once, and memory stays bounded
//! however many products there are. Only the `top` products are exported,
//! which bounds the gauge's label values.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reservations per product over a sliding window.
#[derive(Debug)]
pub struct HotProducts {
    window: Duration,
    capacity: usize,
    top: usize,
    state: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    /// When the current window started.
    started: Instant,
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
}

impl HotProducts {
    /// Counts over windows of `window`, at most `capacity` products each,
    /// exporting the `top` ones.
    pub fn new(window: Duration, capacity: usize, top: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            top,
            state: Mutex::new(Windows {
                started: Instant::now(),
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }

    /// Counts one reservation of `product_id` at `now`.
    pub fn record(&self, product_id: &str, now: Instant) {
        let mut state = self.lock();
        self.rotate(&mut state, now);
        if let Some(count) = state.current.get_mut(product_id) {
            *count += 1;
            return;
        }
        let mut count = 1;
        if state.current.len() >= self.capacity
            && let Some((least, least_count)) = state
                .current
                .iter()
                .min_by_key(|(_, count)| **count)
                .map(|(product, count)| (product.clone(), *count))
        {
            state.current.remove(&least);
            count += least_count;
        }
        state.current.insert(product_id.to_owned(), count);
    }

    /// The `top` products at `now`, most reserved first (ties by id).
    pub fn top(&self, now: Instant) -> Vec<(String, u64)> {
        let mut state = self.lock();
        self.rotate(&mut state, now);
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for (product, count) in state.previous.iter().chain(&state.current) {
            *totals.entry(product.as_str()).or_default() += count;
        }
        let mut ranked: Vec<(String, u64)> = totals
            .into_iter()
            .map(|(product, count)| (product.to_owned(), count))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.top);
        ranked
    }

    fn rotate(&self, state: &mut Windows, now: Instant) {
        let elapsed = now.saturating_duration_since(state.started);
        if elapsed < self.window {
            return;
        }
        if elapsed < self.window * 2 {
            state.previous = std::mem::take(&mut state.current);
            state.started += self.window;
        } else {
            state.previous.clear();
            state.current.clear();
            state.started = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_reserved_products_lead_within_the_window() {
        let hot = HotProducts::new(Duration::from_secs(60), 100, 2);
        let start = Instant::now();
        for (product, times) in [("a", 3), ("b", 5), ("c", 1)] {
            for _ in 0..times {
                hot.record(product, start);
            }
        }
        assert_eq!(hot.top(start), [("b".to_owned(), 5), ("a".to_owned(), 3)]);
        // The next window still counts the previous one.
        let later = start + Duration::from_secs(61);
        for _ in 0..4 {
            hot.record("c", later);
        }
        assert_eq!(hot.top(later), [("b".to_owned(), 5), ("c".to_owned(), 5)]);
        // Two windows on, the old counts are gone.
        let much_later = later + Duration::from_secs(121);
        hot.record("a", much_later);
        assert_eq!(hot.top(much_later), [("a".to_owned(), 1)]);
    }

    #[test]
    fn memory_is_bounded_and_a_hot_product_is_not_lost_among_many_cold_ones() {
        let hot = HotProducts::new(Duration::from_secs(60), 10, 1);
        let now = Instant::now();
        // Space-saving keeps every product reserved more than n / capacity
        // times (here 1,300 / 10).
        for _ in 0..300 {
            hot.record("hot", now);
        }
        for n in 0..1_000 {
            hot.record(&format!("cold-{n}"), now);
        }
        assert!(hot.lock().current.len() <= 10);
        assert_eq!(hot.top(now)[0].0, "hot");
    }
}
