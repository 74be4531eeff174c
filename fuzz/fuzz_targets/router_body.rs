//! The router's handling of a `POST /v1/gateways/{id}/messages` body, up to forwarding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sallyport_router::fuzzing::request_body(data));
