//! The console's static files, embedded in the binary at compile time (no build step).

/// (URL path, content type, bytes) of every static file.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("static/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/app.js"),
    ),
    (
        "/ui/style.css",
        "text/css; charset=utf-8",
        include_bytes!("static/style.css"),
    ),
    (
        "/ui/favicon.svg",
        "image/svg+xml",
        include_bytes!("static/favicon.svg"),
    ),
];

/// The content type and bytes of the file at `path`, if there is one.
pub fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(at, _, _)| *at == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every page the HTML names is served, and nothing outside the table is.
    #[test]
    fn the_page_references_only_served_files() {
        let (_, html) = find("/").expect("index");
        let html = std::str::from_utf8(html).expect("utf-8");
        for asset in ["/ui/app.js", "/ui/style.css", "/ui/favicon.svg"] {
            assert!(html.contains(asset), "{asset} not referenced");
            assert!(find(asset).is_some(), "{asset} not served");
        }
        assert!(find("/ui/../Cargo.toml").is_none());
        assert!(find("/ui/").is_none());
    }
}
