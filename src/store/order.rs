//! The decisions of an all-or-nothing order reservation that both stores
//! share: which products the order already holds, and which products fall
//! short. The stores read and lock; these functions decide.

use std::collections::BTreeMap;

use super::{OrderItem, ReserveOrderOutcome};
use crate::domain::{ItemConflict, Reservation, Shortage, StockLevel};

/// An order's items split against its existing reservations.
pub(super) struct Split<'a> {
    /// Products the order already holds in the asked quantity: kept as they are.
    pub kept: Vec<Reservation>,
    /// Products to reserve now.
    pub needed: Vec<&'a OrderItem>,
}

/// Splits `items` against the order's `existing` reservations. A product
/// held in another quantity is a conflict; every conflict is listed.
pub(super) fn split(
    items: &[OrderItem],
    existing: Vec<Reservation>,
) -> Result<Split<'_>, Vec<ItemConflict>> {
    let mut existing: BTreeMap<String, Reservation> = existing
        .into_iter()
        .map(|reservation| (reservation.product_id.clone(), reservation))
        .collect();
    let mut kept = Vec::new();
    let mut needed = Vec::new();
    let mut conflicts = Vec::new();
    for item in items {
        match existing.remove(&item.product_id) {
            None => needed.push(item),
            Some(reservation) if reservation.quantity == item.quantity => kept.push(reservation),
            Some(reservation) => conflicts.push(ItemConflict {
                product_id: item.product_id.clone(),
                existing_quantity: reservation.quantity,
                requested: item.quantity,
            }),
        }
    }
    if conflicts.is_empty() {
        Ok(Split { kept, needed })
    } else {
        Err(conflicts)
    }
}

/// Why `needed` cannot be reserved against `stocks` (the products' rows,
/// locked), listing every product at fault; `None` when all can be.
pub(super) fn refusal(
    needed: &[&OrderItem],
    stocks: &BTreeMap<String, StockLevel>,
) -> Option<ReserveOrderOutcome> {
    let missing: Vec<String> = needed
        .iter()
        .filter(|item| !stocks.contains_key(&item.product_id))
        .map(|item| item.product_id.clone())
        .collect();
    if !missing.is_empty() {
        return Some(ReserveOrderOutcome::ProductsNotFound(missing));
    }
    let short = shortages(needed, stocks);
    (!short.is_empty()).then_some(ReserveOrderOutcome::Insufficient(short))
}

/// The products of `needed` with less available than asked.
pub(super) fn shortages(
    needed: &[&OrderItem],
    stocks: &BTreeMap<String, StockLevel>,
) -> Vec<Shortage> {
    needed
        .iter()
        .filter_map(|item| {
            let available = stocks.get(&item.product_id)?.available_quantity();
            (available < item.quantity).then(|| Shortage {
                product_id: item.product_id.clone(),
                requested: item.quantity,
                available,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::ReservationStatus;

    fn item(product: &str, quantity: i32) -> OrderItem {
        OrderItem {
            id: format!("r-{product}"),
            product_id: product.into(),
            quantity,
        }
    }

    fn held(product: &str, quantity: i32) -> Reservation {
        Reservation {
            id: format!("old-{product}"),
            product_id: product.into(),
            order_id: "o".into(),
            quantity,
            released_quantity: 0,
            committed_quantity: 0,
            status: ReservationStatus::Active,
            expires_at: Utc::now(),
            created_at: Utc::now(),
        }
    }

    fn stock(product: &str, total: i32, reserved: i32) -> (String, StockLevel) {
        (
            product.into(),
            StockLevel {
                product_id: product.into(),
                total_quantity: total,
                reserved_quantity: reserved,
                updated_at: Utc::now(),
                version: 1,
            },
        )
    }

    #[test]
    fn held_products_are_kept_and_other_quantities_all_listed() {
        let items = [item("a", 1), item("b", 2), item("c", 3)];
        let split_ok = split(&items, vec![held("b", 2)]).unwrap_or_else(|_| panic!("no conflict"));
        assert_eq!(split_ok.kept.len(), 1);
        let needed: Vec<&str> = split_ok
            .needed
            .iter()
            .map(|i| i.product_id.as_str())
            .collect();
        assert_eq!(needed, ["a", "c"]);

        let Err(conflicts) = split(&items, vec![held("a", 5), held("c", 1)]) else {
            panic!("expected conflicts");
        };
        let listed: Vec<(&str, i32, i32)> = conflicts
            .iter()
            .map(|c| (c.product_id.as_str(), c.existing_quantity, c.requested))
            .collect();
        assert_eq!(listed, [("a", 5, 1), ("c", 1, 3)]);
    }

    #[test]
    fn every_missing_or_short_product_is_listed() {
        let items = [item("a", 2), item("b", 5), item("c", 4)];
        let needed: Vec<&OrderItem> = items.iter().collect();
        let stocks: BTreeMap<_, _> = [stock("a", 2, 0), stock("b", 9, 6), stock("c", 4, 1)]
            .into_iter()
            .collect();
        let Some(ReserveOrderOutcome::Insufficient(short)) = refusal(&needed, &stocks) else {
            panic!("expected shortages");
        };
        let listed: Vec<(&str, i32, i32)> = short
            .iter()
            .map(|s| (s.product_id.as_str(), s.requested, s.available))
            .collect();
        assert_eq!(listed, [("b", 5, 3), ("c", 4, 3)]);

        let partial: BTreeMap<_, _> = [stock("b", 9, 0)].into_iter().collect();
        let Some(ReserveOrderOutcome::ProductsNotFound(missing)) = refusal(&needed, &partial)
        else {
            panic!("expected missing products");
        };
        assert_eq!(missing, ["a", "c"]);

        let plenty: BTreeMap<_, _> = [stock("a", 9, 0), stock("b", 9, 0), stock("c", 9, 0)]
            .into_iter()
            .collect();
        assert!(refusal(&needed, &plenty).is_none());
    }
}
