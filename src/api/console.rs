//! The web console: `web/dist`, built from `web/` by esbuild and committed,
//! embedded in the binary at compile time, so `cargo run` alone serves it and
//! neither `cargo build` nor the service needs Node.js. The console calls the
//! service over gRPC-Web from the same origin.

/// One file of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/dist/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("../../web/dist/console.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("../../web/dist/console.css"),
};

/// The console's `Content-Security-Policy`: its own scripts, styles and
/// calls only; the favicon is a `data:` URL.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// The console file served at `path`, if any.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/console.js" => Some(SCRIPT),
        "/console.css" => Some(STYLE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_files_it_loads_are_served() {
        let page = asset("/").expect("the page");
        assert!(page.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(page.body).expect("utf-8");
        for file in ["console.js", "console.css"] {
            assert!(
                html.contains(&format!("\"{file}\"")),
                "the page loads {file}"
            );
            assert!(asset(&format!("/{file}")).is_some(), "{file} is served");
        }
        assert_eq!(asset("/index.html"), Some(page));
        assert!(asset("/api/v1/inventory").is_none());
    }
}
