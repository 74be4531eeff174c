//! The router's handling of a text frame on a client WebSocket.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sallyport_router::fuzzing::client_frame(data));
