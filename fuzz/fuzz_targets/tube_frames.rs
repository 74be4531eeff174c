//! The tube's frames as a peer sends them: any sequence of channel messages into a gateway's
//! and a client's multiplexer is refused, skipped or handled, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Split the input into messages: each starts with a length byte.
    let mut messages = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        messages.push(&tail[..len]);
        rest = &tail[len..];
    }
    sallyport_tube::fuzzing::frames(&messages);
});
