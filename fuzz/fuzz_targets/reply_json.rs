//! An inventory reply's protobuf bytes written as REST JSON: the fast
//! writer declines them or writes exactly what the general path writes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inventory_service::transcode::fuzzing::reply_json(data);
});
