//! The pointer helpers and the exports built on them, exercised the way C uses them. Nothing
//! here does I/O or crypto, so `scripts/miri` runs all of it under miri, which reports any
//! undefined behaviour (aliasing, use after free, misaligned or out-of-bounds access) and any
//! leak.

use std::ptr;
use std::sync::Arc;

use super::*;
use crate::error::{Error, ambit_error, ambit_result};
use crate::strings::{
    HeaderEdits, ambit_header, ambit_header_edits, ambit_header_op, ambit_str, header_map,
};

// === a handle type of each ownership ===

struct ambit_test_box {
    _private: [u8; 0],
}
impl Castable for ambit_test_box {
    type Ownership = OwnershipBox;
    type RustType = Vec<String>;
}

struct ambit_test_arc {
    _private: [u8; 0],
}
impl Castable for ambit_test_arc {
    type Ownership = OwnershipArc;
    type RustType = String;
}

#[repr(C)]
struct ambit_test_ref {
    value: u64,
}
impl Castable for ambit_test_ref {
    type Ownership = OwnershipRef;
    type RustType = ambit_test_ref;
}

/// Exports in miniature: the shapes every real one has.
fn push(handle: *mut ambit_test_box, s: *const u8, n: usize) -> ambit_result {
    ffi_panic_boundary!({
        let v: &mut Vec<String> = try_mut_from_ptr!(handle);
        let s = try_str!(s, n);
        v.push(s.to_owned());
        ambit_result::AMBIT_RESULT_OK
    })
}

fn read_len(handle: *const ambit_test_arc, out: *mut usize) -> ambit_result {
    ffi_panic_boundary!({
        let s: Arc<String> = try_clone_arc!(handle);
        let out = try_out!(out);
        // SAFETY: checked non-NULL; the test passes a live local.
        unsafe { *out = s.len() };
        ambit_result::AMBIT_RESULT_OK
    })
}

fn read_value(r: *const ambit_test_ref, out: *mut u64) -> ambit_result {
    ffi_panic_boundary!({
        let r = try_ref_from_ptr!(r);
        let out = try_out!(out);
        // SAFETY: checked non-NULL; the test passes a live local.
        unsafe { *out = r.value };
        ambit_result::AMBIT_RESULT_OK
    })
}

fn sum(p: *const u32, n: usize) -> ambit_result {
    ffi_panic_boundary!({
        let s: &[u32] = try_slice!(p, n);
        if s.iter().sum::<u32>() == 6 {
            ambit_result::AMBIT_RESULT_OK
        } else {
            ambit_result::AMBIT_RESULT_INVALID_PARAMETER
        }
    })
}

fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    // The default hook would print the panic; keep test output clean.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}

fn s(text: &str) -> ambit_str {
    ambit_str::borrow(text.as_bytes())
}

// === helpers ===

#[test]
fn box_handles_round_trip_and_free_null() {
    let h: *mut ambit_test_box = to_boxed_mut_ptr(vec!["a".to_owned()]);
    assert_eq!(push(h, b"bc".as_ptr(), 2), ambit_result::AMBIT_RESULT_OK);
    assert_eq!(push(h, ptr::null(), 0), ambit_result::AMBIT_RESULT_OK);
    assert_eq!(
        push(h, ptr::null(), 1),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        push(h, [0xffu8, 0xfe].as_ptr(), 2),
        ambit_result::AMBIT_RESULT_INVALID_PARAMETER
    );
    assert_eq!(
        push(ptr::null_mut(), b"x".as_ptr(), 1),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    // SAFETY: `h` is live and not used elsewhere.
    let v = unsafe { try_from(h.cast_const()) }.expect("non-NULL");
    assert_eq!(v, &["a", "bc", ""]);
    // SAFETY: `h` came from `to_boxed_mut_ptr` and is taken back once.
    let back = unsafe { take_box(h) }.expect("non-NULL");
    assert_eq!(back.len(), 3);
    // SAFETY: NULL is always allowed.
    unsafe {
        free_box::<ambit_test_box>(ptr::null_mut());
        assert!(take_box::<ambit_test_box>(ptr::null_mut()).is_none());
        assert!(try_from::<ambit_test_box>(ptr::null()).is_none());
        assert!(try_from_mut::<ambit_test_box>(ptr::null_mut()).is_none());
    }
}

#[test]
fn arc_handles_keep_counts_right() {
    let shared = Arc::new("four".to_owned());
    let h: *const ambit_test_arc = to_arc_const_ptr(shared.clone());
    assert_eq!(Arc::strong_count(&shared), 2);
    let mut n = 0;
    assert_eq!(read_len(h, &mut n), ambit_result::AMBIT_RESULT_OK);
    assert_eq!(n, 4);
    // The export's own clone was dropped when it returned.
    assert_eq!(Arc::strong_count(&shared), 2);
    assert_eq!(
        read_len(h, ptr::null_mut()),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        read_len(ptr::null(), &mut n),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(Arc::strong_count(&shared), 2);
    // SAFETY: `h` is live; the clone is ours.
    let mine = unsafe { clone_arc(h) }.expect("non-NULL");
    assert_eq!(Arc::strong_count(&shared), 3);
    drop(mine);
    // SAFETY: `h` came from `to_arc_const_ptr` and is released once; NULL is a no-op.
    unsafe {
        free_arc(h);
        free_arc::<ambit_test_arc>(ptr::null());
        assert!(clone_arc::<ambit_test_arc>(ptr::null()).is_none());
    }
    assert_eq!(Arc::strong_count(&shared), 1);
}

#[test]
fn borrowed_structs_and_slices() {
    let r = ambit_test_ref { value: 7 };
    let mut out = 0;
    assert_eq!(read_value(&r, &mut out), ambit_result::AMBIT_RESULT_OK);
    assert_eq!(out, 7);
    assert_eq!(
        read_value(ptr::null(), &mut out),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    let p: *const ambit_test_ref = to_ref_const_ptr(&r);
    assert!(ptr::eq(p, &r));

    let nums = [1u32, 2, 3];
    assert_eq!(sum(nums.as_ptr(), 3), ambit_result::AMBIT_RESULT_OK);
    assert_eq!(
        sum(nums.as_ptr(), 2),
        ambit_result::AMBIT_RESULT_INVALID_PARAMETER
    );
    assert_eq!(
        sum(ptr::null(), 3),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    // A dangling (but non-NULL) pointer with length 0 is never read.
    assert_eq!(
        sum(ptr::NonNull::dangling().as_ptr(), 0),
        ambit_result::AMBIT_RESULT_INVALID_PARAMETER
    );
    // SAFETY: NULL with 0 is allowed; the array is live.
    unsafe {
        assert_eq!(try_slice_from::<u32>(ptr::null(), 0), Some(&[][..]));
        assert_eq!(try_slice_from(nums.as_ptr().add(1), 2), Some(&[2, 3][..]));
    }
}

#[test]
fn write_out_copies_only_what_fits() {
    let mut buf = [0u8; 4];
    let mut n = 0;
    // SAFETY: `buf` and `n` are live locals of the stated sizes.
    unsafe {
        assert_eq!(
            write_out(b"abcd", buf.as_mut_ptr(), 4, &mut n),
            ambit_result::AMBIT_RESULT_OK
        );
        assert_eq!((&buf, n), (b"abcd", 4));
        assert_eq!(
            write_out(b"abcde", buf.as_mut_ptr(), 4, &mut n),
            ambit_result::AMBIT_RESULT_INSUFFICIENT_SIZE
        );
        assert_eq!((&buf, n), (b"abcd", 5), "nothing copied, size needed");
        assert_eq!(
            write_out(b"", ptr::null_mut(), 0, &mut n),
            ambit_result::AMBIT_RESULT_OK
        );
        assert_eq!(n, 0);
        assert_eq!(
            write_out(b"x", ptr::null_mut(), 1, &mut n),
            ambit_result::AMBIT_RESULT_NULL_PARAMETER
        );
    }
}

#[test]
fn panics_become_result_codes() {
    fn boom(fail: bool) -> ambit_result {
        ffi_panic_boundary!({
            if fail {
                panic!("deliberate");
            }
            ambit_result::AMBIT_RESULT_OK
        })
    }
    assert_eq!(
        quiet_panics(|| boom(true)),
        ambit_result::AMBIT_RESULT_PANIC
    );
    assert_eq!(boom(false), ambit_result::AMBIT_RESULT_OK);
    let default: usize = quiet_panics(|| ffi_panic_boundary!(7, { panic!("deliberate") }));
    assert_eq!(default, 7);
}

// === strings and headers ===

#[test]
fn ambit_str_text() {
    // SAFETY: every string points at live static or local data.
    unsafe {
        assert_eq!(s("shop").text(), Ok("shop"));
        assert_eq!(ambit_str::default().text(), Ok(""));
        assert_eq!(ambit_str::default().optional_text(), Ok(None));
        assert_eq!(s("x").optional_text(), Ok(Some("x")));
        let bad = ambit_str {
            data: ptr::null(),
            len: 3,
        };
        assert_eq!(bad.text(), Err(ambit_result::AMBIT_RESULT_NULL_PARAMETER));
        let raw = [0xc3u8, 0x28];
        assert_eq!(
            ambit_str::borrow(&raw).text(),
            Err(ambit_result::AMBIT_RESULT_INVALID_PARAMETER)
        );
    }
}

#[test]
fn header_arrays_become_maps_and_edits() {
    let headers = [
        ambit_header {
            name: s("Host"),
            value: s("cart"),
        },
        ambit_header {
            name: s("x-a"),
            value: s("1"),
        },
        ambit_header {
            name: s("X-A"),
            value: s("2"),
        },
    ];
    // SAFETY: a live local array of valid headers.
    let before = unsafe { header_map(headers.as_ptr(), headers.len()) }.expect("valid");
    assert_eq!(before.get_all("x-a").iter().count(), 2);
    // SAFETY: NULL with 0 is allowed; NULL with a length is refused before any read.
    unsafe {
        assert!(header_map(ptr::null(), 0).expect("empty").is_empty());
        assert_eq!(
            header_map(ptr::null(), 2).err(),
            Some(ambit_result::AMBIT_RESULT_NULL_PARAMETER)
        );
        let bad = [ambit_header {
            name: s("bad name"),
            value: s("v"),
        }];
        assert_eq!(
            header_map(bad.as_ptr(), 1).err(),
            Some(ambit_result::AMBIT_RESULT_INVALID_PARAMETER)
        );
    }
    let mut after = before.clone();
    after.remove("host");
    after.append("x-a", http::HeaderValue::from_static("3"));
    after.insert("x-new", http::HeaderValue::from_static("n"));
    let edits = HeaderEdits::between(&before, &after);
    let ops: Vec<(ambit_header_op, &str, Option<&[u8]>)> = edits
        .0
        .iter()
        .map(|e| {
            (
                e.op,
                e.name.as_str(),
                e.value.as_ref().map(|v| v.as_bytes()),
            )
        })
        .collect();
    use ambit_header_op::*;
    assert_eq!(
        ops,
        [
            (AMBIT_HEADER_OP_REMOVE, "host", None),
            (AMBIT_HEADER_OP_SET, "x-a", Some(&b"1"[..])),
            (AMBIT_HEADER_OP_APPEND, "x-a", Some(&b"2"[..])),
            (AMBIT_HEADER_OP_APPEND, "x-a", Some(&b"3"[..])),
            (AMBIT_HEADER_OP_SET, "x-new", Some(&b"n"[..])),
        ]
    );
    assert!(HeaderEdits::between(&before, &before).0.is_empty());

    // Through the exports: a borrowed list, read; and the NULL cases.
    let owned: *const ambit_header_edits = edits.as_ptr();
    assert_eq!(crate::strings::ambit_header_edits_len(owned), 5);
    let (mut op, mut name, mut value) = (AMBIT_HEADER_OP_REMOVE, s(""), s(""));
    assert_eq!(
        crate::strings::ambit_header_edits_get(owned, 4, &mut op, &mut name, &mut value),
        ambit_result::AMBIT_RESULT_OK
    );
    // SAFETY: the strings point into `owned`, still live.
    unsafe {
        assert_eq!(
            (op, name.text(), value.text()),
            (AMBIT_HEADER_OP_SET, Ok("x-new"), Ok("n"))
        );
    }
    assert_eq!(
        crate::strings::ambit_header_edits_get(owned, 5, &mut op, &mut name, &mut value),
        ambit_result::AMBIT_RESULT_NOT_FOUND
    );
    assert_eq!(
        crate::strings::ambit_header_edits_get(owned, 0, ptr::null_mut(), &mut name, &mut value),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        crate::strings::ambit_header_edits_get(ptr::null(), 0, &mut op, &mut name, &mut value),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(crate::strings::ambit_header_edits_len(ptr::null()), 0);
}

// === errors ===

#[test]
fn errors_are_handed_out_and_freed_once() {
    let mut err: *mut ambit_error = ptr::null_mut();
    let mut e = Error::new(ambit_result::AMBIT_RESULT_CONFIG_INVALID, "bad field");
    e.location = Some(["f.yaml".into(), "HTTPRoute a/b".into(), "spec.x".into()]);
    // SAFETY: `err` is a live local.
    let code = unsafe { e.give(&mut err) };
    assert_eq!(code, ambit_result::AMBIT_RESULT_CONFIG_INVALID);
    assert_eq!(
        crate::error::ambit_error_code(err),
        ambit_result::AMBIT_RESULT_CONFIG_INVALID
    );
    let mut buf = [0u8; 16];
    let mut n = 0;
    assert_eq!(
        crate::error::ambit_error_message(err, buf.as_mut_ptr(), buf.len(), &mut n),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(&buf[..n], b"bad field");
    let (mut file, mut object, mut field) = (s(""), s(""), s(""));
    assert_eq!(
        crate::error::ambit_error_location(err, &mut file, &mut object, &mut field),
        ambit_result::AMBIT_RESULT_OK
    );
    // SAFETY: the strings point into `err`, still live.
    unsafe {
        assert_eq!(
            (file.text(), object.text(), field.text()),
            (Ok("f.yaml"), Ok("HTTPRoute a/b"), Ok("spec.x"))
        );
    }
    assert_eq!(
        crate::error::ambit_error_location(err, ptr::null_mut(), &mut object, &mut field),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    crate::error::ambit_error_free(err);
    crate::error::ambit_error_free(ptr::null_mut());
    // Giving to a NULL out-pointer drops the error right away.
    let e = Error::new(ambit_result::AMBIT_RESULT_IO, "");
    // SAFETY: NULL is allowed.
    let code = unsafe { e.give(ptr::null_mut()) };
    assert_eq!(code, ambit_result::AMBIT_RESULT_IO);
    assert_eq!(
        crate::error::ambit_result_message(
            ambit_result::AMBIT_RESULT_NOT_FOUND as u32,
            buf.as_mut_ptr(),
            buf.len(),
            &mut n
        ),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(&buf[..n], b"no such item");
}

// === route decisions (pure Rust: regex, YAML) ===

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-routed, value: "yes"}], remove: [x-drop]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-served-by, value: cart-v2}]}
    backendRefs: [{name: cart-v2, port: 8080}]
    timeouts: {request: 3s}
  - matches: [{path: {type: Exact, value: /go}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: elsewhere.example, statusCode: 301}
"#;

fn request(path: &str, headers: &[ambit_header]) -> crate::route::ambit_route_request {
    crate::route::ambit_route_request {
        service_namespace: s("shop"),
        service_name: s("cart"),
        port: 80,
        waypoint_namespace: ambit_str::default(),
        waypoint_name: ambit_str::default(),
        authority: ambit_str::default(),
        method: s("GET"),
        path: ambit_str::borrow(path.as_bytes()),
        headers: headers.as_ptr(),
        headers_len: headers.len(),
        seed: 1,
        client_namespace: ambit_str::default(),
    }
}

#[test]
fn route_decisions_outlive_their_table() {
    use crate::route::*;
    let mut table: *const ambit_route_table = ptr::null();
    assert_eq!(
        ambit_route_table_from_yaml(s(ROUTES), &mut table, ptr::null_mut()),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(ambit_route_table_len(table), 1);
    let headers = [
        ambit_header {
            name: s("host"),
            value: s("cart.shop"),
        },
        ambit_header {
            name: s("x-drop"),
            value: s("1"),
        },
    ];
    let req = request("/old/items?id=3", &headers);
    let mut d: *mut ambit_route_decision = ptr::null_mut();
    assert_eq!(
        ambit_route_table_decide(table, &req, &mut d),
        ambit_result::AMBIT_RESULT_OK
    );
    // The decision keeps what it borrows alive: free the table first, then read.
    ambit_route_table_free(table);
    assert_eq!(
        ambit_route_decision_kind(d),
        ambit_route_kind::AMBIT_ROUTE_KIND_FORWARD
    );
    // SAFETY: the strings point into `d`, still live.
    unsafe {
        assert_eq!(ambit_route_decision_path(d).text(), Ok("/new/items?id=3"));
        assert_eq!(ambit_route_decision_backend_name(d).text(), Ok("cart-v2"));
        assert_eq!(ambit_route_decision_backend_namespace(d).text(), Ok("shop"));
        assert_eq!(ambit_route_decision_route(d).text(), Ok("shop/cart"));
    }
    assert_eq!(ambit_route_decision_backend_port(d), 8080);
    assert_eq!(ambit_route_decision_status(d), 0);
    let edits = ambit_route_decision_request_edits(d);
    assert_eq!(crate::strings::ambit_header_edits_len(edits), 2);
    let mut limits = ambit_route_limits::default();
    assert_eq!(
        ambit_route_decision_limits(d, &mut limits),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(limits.request_timeout_ms, 3000);
    let mut resp: *const ambit_header_edits = ptr::null();
    assert_eq!(
        ambit_route_decision_response_edits(d, ptr::null(), 0, &mut resp),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(crate::strings::ambit_header_edits_len(resp), 1);
    ambit_route_decision_free(d);

    // NULL reads fail closed; NULL frees do nothing.
    assert_eq!(
        ambit_route_decision_kind(ptr::null()),
        ambit_route_kind::AMBIT_ROUTE_KIND_NO_BACKEND
    );
    assert_eq!(ambit_route_decision_status(ptr::null()), 500);
    assert!(ambit_route_decision_request_edits(ptr::null()).is_null());
    assert!(ambit_route_decision_path(ptr::null()).data.is_null());
    ambit_route_decision_free(ptr::null_mut());
    ambit_route_table_free(ptr::null());
}

#[test]
fn route_redirects_and_refusals() {
    use crate::route::*;
    let mut table: *const ambit_route_table = ptr::null();
    assert_eq!(
        ambit_route_table_from_yaml(s(ROUTES), &mut table, ptr::null_mut()),
        ambit_result::AMBIT_RESULT_OK
    );
    let host = [ambit_header {
        name: s("host"),
        value: s("cart.shop"),
    }];
    let mut d: *mut ambit_route_decision = ptr::null_mut();
    let req = request("/go", &host);
    assert_eq!(
        ambit_route_table_decide(table, &req, &mut d),
        ambit_result::AMBIT_RESULT_OK
    );
    assert_eq!(
        ambit_route_decision_kind(d),
        ambit_route_kind::AMBIT_ROUTE_KIND_REDIRECT
    );
    assert_eq!(ambit_route_decision_status(d), 301);
    // SAFETY: points into `d`, still live.
    let location = unsafe { ambit_route_decision_location(d).text() };
    assert_eq!(location, Ok("http://elsewhere.example/go"));
    ambit_route_decision_free(d);

    let mut bad = request("/go", &host);
    bad.method = s("G E T");
    d = ptr::null_mut();
    assert_eq!(
        ambit_route_table_decide(table, &bad, &mut d),
        ambit_result::AMBIT_RESULT_INVALID_PARAMETER
    );
    assert!(d.is_null(), "outputs are written only on success");
    bad = request("/go", &host);
    bad.waypoint_name = s("waypoint");
    assert_eq!(
        ambit_route_table_decide(table, &bad, &mut d),
        ambit_result::AMBIT_RESULT_INVALID_PARAMETER
    );
    assert_eq!(
        ambit_route_table_decide(ptr::null(), &req, &mut d),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        ambit_route_table_decide(table, ptr::null(), &mut d),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        ambit_route_table_decide(table, &req, ptr::null_mut()),
        ambit_result::AMBIT_RESULT_NULL_PARAMETER
    );
    assert!(d.is_null());
    ambit_route_table_free(table);

    let mut err: *mut ambit_error = ptr::null_mut();
    let garbage = "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nspec: 7\n";
    let mut t2: *const ambit_route_table = ptr::null();
    assert_eq!(
        ambit_route_table_from_yaml(s(garbage), &mut t2, &mut err),
        ambit_result::AMBIT_RESULT_CONFIG_INVALID
    );
    assert!(t2.is_null());
    assert!(!err.is_null());
    // A config error says where it is (the ABI names L7 YAML `<l7>`).
    let (mut file, mut object, mut field) = (s(""), s(""), s(""));
    assert_eq!(
        crate::error::ambit_error_location(err, &mut file, &mut object, &mut field),
        ambit_result::AMBIT_RESULT_OK
    );
    // SAFETY: the strings point into `err`, still live.
    unsafe {
        assert_eq!(field.text(), Ok("metadata.name"));
    }
    crate::error::ambit_error_free(err);
}
