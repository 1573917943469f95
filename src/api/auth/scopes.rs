//! The scope each method needs.

/// Reads: stock, history, reservations, stock events.
pub const READ: &str = "inventory.read";
/// Reservations: reserve, release, commit, for one product or an order.
pub const RESERVE: &str = "inventory.reserve";
/// Changes of the stock on hand, and of products' settings.
pub const ADMIN: &str = "inventory.admin";

/// The scope a call to `path` (`/package.Service/Method`) needs, `None` for
/// calls that stay open (health and reflection). A method this table does
/// not name needs [`ADMIN`]: a new method is closed until it is listed.
pub fn required_scope(path: &str) -> Option<&'static str> {
    if crate::guard::is_exempt(path) {
        return None;
    }
    let method = path
        .strip_prefix("/inventory.v1.InventoryService/")
        .unwrap_or_default();
    Some(match method {
        "CheckInventory"
        | "GetInventoryHistory"
        | "ListReservations"
        | "ListInventory"
        | "ListProductAlternatives"
        | "WatchInventory" => READ,
        "ReserveInventory" | "ReserveOrder" | "ReleaseInventory" | "CommitReservation"
        | "ReleaseOrder" => RESERVE,
        _ => ADMIN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_its_scope_and_health_and_reflection_stay_open() {
        let pool = prost_reflect::DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptors");
        let service = pool
            .get_service_by_name("inventory.v1.InventoryService")
            .expect("service");
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let scope = required_scope(&path).expect("inventory calls need a token");
            let expected = match method.name() {
                "UpdateInventory"
                | "SetLowStockThreshold"
                | "SetProductAlternatives"
                | "SetUnitCost" => ADMIN,
                name if name.starts_with("Check")
                    || name.starts_with("Get")
                    || name.starts_with("List")
                    || name.starts_with("Watch") =>
                {
                    READ
                }
                _ => RESERVE,
            };
            assert_eq!(scope, expected, "{path}");
        }
        assert_eq!(required_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_scope("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(required_scope("/other.Service/Method"), Some(ADMIN));
    }
}
