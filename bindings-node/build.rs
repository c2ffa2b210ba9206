//! Node-API linking setup (undefined `napi_*` symbols resolve in the node
//! binary at load time).
fn main() {
    napi_build::setup();
}
