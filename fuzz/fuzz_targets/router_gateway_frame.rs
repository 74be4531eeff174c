//! The router's handling of a gateway's hello and of its later frames.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sallyport_router::fuzzing::gateway_frame(data));
