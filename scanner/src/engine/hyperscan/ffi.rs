//! The Hyperscan (or Vectorscan) C API, as much of it as keyburn uses.
//! The library is found by pkg-config (`libhs`) in the build script.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};

#[repr(C)]
pub(super) struct HsDatabase {
    _private: [u8; 0],
}
#[repr(C)]
pub(super) struct HsScratch {
    _private: [u8; 0],
}
#[repr(C)]
pub(super) struct HsCompileError {
    pub message: *mut c_char,
    pub expression: c_int,
}

pub(super) type MatchHandler = unsafe extern "C" fn(
    id: c_uint,
    from: c_ulonglong,
    to: c_ulonglong,
    flags: c_uint,
    context: *mut c_void,
) -> c_int;

pub(super) const HS_SUCCESS: c_int = 0;
pub(super) const HS_MODE_BLOCK: c_uint = 1;
pub(super) const HS_FLAG_CASELESS: c_uint = 1;
pub(super) const HS_FLAG_PREFILTER: c_uint = 128;

// Linked through pkg-config by the build script (libhs).
extern "C" {
    pub(super) fn hs_compile_multi(
        expressions: *const *const c_char,
        flags: *const c_uint,
        ids: *const c_uint,
        elements: c_uint,
        mode: c_uint,
        platform: *const c_void,
        db: *mut *mut HsDatabase,
        error: *mut *mut HsCompileError,
    ) -> c_int;
    pub(super) fn hs_free_compile_error(error: *mut HsCompileError) -> c_int;
    pub(super) fn hs_free_database(db: *mut HsDatabase) -> c_int;
    pub(super) fn hs_alloc_scratch(db: *const HsDatabase, scratch: *mut *mut HsScratch) -> c_int;
    pub(super) fn hs_clone_scratch(src: *const HsScratch, dest: *mut *mut HsScratch) -> c_int;
    pub(super) fn hs_free_scratch(scratch: *mut HsScratch) -> c_int;
    pub(super) fn hs_scan(
        db: *const HsDatabase,
        data: *const c_char,
        length: c_uint,
        flags: c_uint,
        scratch: *mut HsScratch,
        on_event: MatchHandler,
        context: *mut c_void,
    ) -> c_int;
    pub(super) fn hs_serialize_database(
        db: *const HsDatabase,
        bytes: *mut *mut c_char,
        length: *mut usize,
    ) -> c_int;
    pub(super) fn hs_deserialize_database(
        bytes: *const c_char,
        length: usize,
        db: *mut *mut HsDatabase,
    ) -> c_int;
    pub(super) fn hs_version() -> *const c_char;
    pub(super) fn hs_valid_platform() -> c_int;
}

extern "C" {
    // hs_serialize_database allocates with the C allocator.
    pub(super) fn free(p: *mut c_void);
}

/// The version string of the linked library.
pub(crate) fn version() -> String {
    // SAFETY: hs_version returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(hs_version()) }
        .to_string_lossy()
        .into_owned()
}
