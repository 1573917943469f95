//! A whole REST or Connect request through the transcoding layer: route
//! lookup, query-string binding, JSON to protobuf.
#![no_main]

use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runtime().block_on(inventory_service::transcode::fuzzing::request(data));
});
