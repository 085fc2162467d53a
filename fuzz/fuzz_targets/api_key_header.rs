//! Fuzzes the API-key layer's header parsing and the config parsers: any bytes in
//! `Authorization` or `x-api-key` must give a response (never a panic), 200 only for the one
//! valid key; `KeyHash::from_hex` and RFC 3339 expiry parsing must never panic.
//!
//! Run with `cargo fuzz run api_key_header` from the repository root.
#![no_main]

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use battlement::{
    auth::api_key::{ApiKeyLayer, ApiKeys, Expiry, KeyHash, Principal, PrincipalId, hash_key},
    problem::Problem,
};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service};

const KEY: &str = "bk_fuzz_valid";

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeyHash::from_hex(text);
        let _ = Expiry::Rfc3339(text.to_owned()).to_system_time();
    }
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let principal = Principal::new(PrincipalId::new("fuzz").unwrap());
    let keys = ApiKeys::builder().key(hash_key(KEY), &principal).build().unwrap();
    let inner =
        tower::service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = ApiKeyLayer::new(keys)
        .header("x-api-key")
        .unwrap()
        .with_rejection(|p: Problem| {
            let mut res = Response::new(());
            *res.status_mut() = p.status();
            res
        })
        .layer(inner);
    for name in [AUTHORIZATION, http::HeaderName::from_static("x-api-key")] {
        let mut req = Request::new(String::new());
        req.headers_mut().insert(name.clone(), value.clone());
        let mut cx = Context::from_waker(Waker::noop());
        let fut = pin!(svc.call(req));
        let Poll::Ready(Ok(res)) = fut.poll(&mut cx) else {
            panic!("the layer answers at once");
        };
        let v = data.trim_ascii();
        let valid = if name == AUTHORIZATION {
            v.len() > 7
                && v[..7].eq_ignore_ascii_case(b"bearer ")
                && v[7..].trim_ascii_start() == KEY.as_bytes()
        } else {
            v == KEY.as_bytes()
        };
        assert_eq!(res.status() == 200, valid, "{data:?}");
    }
}
