//! The REST layer's fast JSON writer for replies against the general path,
//! on every reply type of the inventory's contract: random messages, sent
//! once and twice over, damaged and cut, either are declined or come out
//! byte for byte as the dynamic message writes them, under both naming and
//! default options (`transcode::fuzzing::reply_json_agrees_for_seed`).

use inventory_service::pb::FILE_DESCRIPTOR_SET;
use inventory_service::transcode::fuzzing::reply_json_agrees_for_seed;
use prost_reflect::DescriptorPool;

#[test]
fn every_inventory_reply_type_is_written_as_the_general_path_writes_it() {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("descriptors");
    let service = pool
        .get_service_by_name("inventory.v1.InventoryService")
        .expect("the service");
    for method in service.methods() {
        for seed in 0..300_u64 {
            reply_json_agrees_for_seed(&method.output(), seed);
        }
    }
}
