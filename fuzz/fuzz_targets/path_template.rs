//! HttpRule path templates: parsing, matching, percent-decoding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inventory_service::transcode::fuzzing::template_and_path(data);
});
