//! Headers every response carries so a browser treats the web app safely: a Content
//! Security Policy (the app's own scripts, styles, images and API only; no framing), no
//! MIME sniffing, and no Referer sent anywhere.

use axum::http::{header, HeaderValue};
use tower::layer::util::{Identity, Stack};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

/// What the web app needs and nothing more: its own scripts (and compiling its wasm
/// module), its own stylesheets, images from itself or inline `data:` ones, calls to its
/// own API. No other origin may load anything into the page or frame it, and no `<base>`
/// can redirect its relative URLs. Script-set element styles (`el.style.height`) are not
/// inline styles, so `style-src 'self'` suffices.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

type Set = SetResponseHeaderLayer<HeaderValue>;
/// The three header layers, stacked.
type Layers = Stack<Set, Stack<Set, Stack<Set, Identity>>>;

/// The layers that add the headers, unless a handler set its own.
pub fn layers() -> ServiceBuilder<Layers> {
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}
