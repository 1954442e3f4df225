//! Embeds the web UI (`frontend/dist`, written by `scripts/build-ui.sh` / `npm run build`) into
//! the server: generates `$OUT_DIR/ui_assets.rs`, a static table of every file with its bytes
//! (`include_bytes!` of the absolute path of a copy in `$OUT_DIR`, so a UI rebuild racing the
//! compile cannot break it), a gzip copy for text types (compressed here, once) and its
//! content type. Without `frontend/dist` the table is empty and `GET /` explains how
//! to build the UI.
//!
//! Cargo reruns this when the dist folder or any file in it changes. While the folder does not
//! exist only this file and `HEARTH_UI_DIST` are watched (watching a missing path would rerun
//! the script, and rebuild the crate, on every build); `scripts/build-ui.sh` touches this file
//! after the first build so the new dist folder is picked up.

use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HEARTH_UI_DIST");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("out dir"));
    let dist = match std::env::var_os("HEARTH_UI_DIST").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => manifest.join("../../frontend/dist"),
    };
    let gz_dir = out.join("ui_gz");
    let _ = std::fs::remove_dir_all(&gz_dir);
    let mut files = Vec::new();
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
        walk(&dist, &dist, &mut files);
        files.sort();
    }
    let mut code = String::new();
    code.push_str("pub static UI_ASSETS: &[UiAsset] = &[\n");
    std::fs::create_dir_all(&gz_dir).expect("create ui_gz");
    let copy_dir = out.join("ui_files");
    let _ = std::fs::remove_dir_all(&copy_dir);
    std::fs::create_dir_all(&copy_dir).expect("create ui_files");
    for (i, (rel, abs)) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", abs.display());
        let ct = content_type(rel);
        // A file that vanished since the walk (the UI being rebuilt right now) is skipped;
        // the rebuild changes the folder, so cargo runs this again.
        let Ok(bytes) = std::fs::read(abs) else {
            continue;
        };
        // Embedded from a copy: a UI rebuild racing this compile cannot break it.
        let copy = copy_dir.join(i.to_string());
        std::fs::write(&copy, &bytes).expect("copy ui file");
        let gz = if is_text(ct) && bytes.len() > 256 {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&bytes).expect("gzip");
            let z = enc.finish().expect("gzip");
            if z.len() < bytes.len() {
                let p = gz_dir.join(format!("{i}.gz"));
                std::fs::write(&p, z).expect("write gzip");
                format!("Some(include_bytes!({:?}))", p.display().to_string())
            } else {
                "None".to_string()
            }
        } else {
            "None".to_string()
        };
        code.push_str(&format!(
            "    UiAsset {{ path: {:?}, body: include_bytes!({:?}), gzip: {gz}, content_type: {:?} }},\n",
            format!("/{rel}"),
            copy.display().to_string(),
            ct
        ));
    }
    code.push_str("];\n");
    let built = code.contains("path: \"/index.html\"");
    code.push_str(&format!("pub const UI_BUILT: bool = {built};\n"));
    std::fs::write(out.join("ui_assets.rs"), code).expect("write ui_assets.rs");
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            println!("cargo:rerun-if-changed={}", p.display());
            walk(root, &p, out);
        } else if ft.is_file() {
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let abs = p.canonicalize().unwrap_or(p.clone());
            out.push((rel.join("/"), abs));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        _ => "application/octet-stream",
    }
}

fn is_text(ct: &str) -> bool {
    ct.starts_with("text/")
        || ct.starts_with("application/json")
        || ct.starts_with("application/manifest+json")
        || ct.starts_with("application/xml")
        || ct.starts_with("image/svg+xml")
        || ct == "application/wasm"
        || ct == "font/ttf"
        || ct == "font/otf"
}
