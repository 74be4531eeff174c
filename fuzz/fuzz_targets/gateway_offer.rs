//! An offer's SDP as the gateway receives it (after opening the seal): parsed, applied and
//! answered, or refused; never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = std::str::from_utf8(data) {
        sallyport_tube::fuzzing::offer(sdp);
    }
});
