//! dockerd's check that a JSON request body says it is JSON (`CheckForJSON`): the endpoints
//! that read a JSON body refuse one sent as another content type, in the words of the dockerd
//! the client was written against. No Content-Type is fine while there is no body.

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};

use crate::version::ApiVersion;

/// Whether a POST to this (unversioned) path reads a JSON body.
fn takes_json(path: &str) -> bool {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        seg.as_slice(),
        ["containers", "create"]
            | ["commit"]
            | ["containers", _, "update" | "exec"]
            | ["exec", _, "start"]
            | ["networks", "create"]
            | ["networks", _, "connect" | "disconnect"]
            | ["volumes", "create"]
            | ["services", "create"]
            | ["services" | "secrets" | "configs" | "nodes", _, "update"]
            | ["secrets" | "configs", "create"]
            | ["swarm", "init" | "join" | "update" | "unlock"]
    )
}

/// The request, or (for one whose body is not declared JSON) the refusal — sent once the body
/// is read (up to the API's limit): a client still sending it would otherwise meet a closed
/// connection instead of the answer. The version is the one [`crate::version::strip`] found.
pub async fn checked(req: Request<Body>) -> Result<Request<Body>, Box<Response<Body>>> {
    let v = *req.extensions().get::<ApiVersion>().expect("set by version::strip");
    match check(&req, v) {
        Ok(()) => Ok(req),
        Err(refusal) => {
            let _ = axum::body::to_bytes(req.into_body(), 16 << 20).await;
            Err(refusal)
        }
    }
}

/// The refusal for a request whose body is not declared JSON, if it is one.
fn check(req: &Request<Body>, v: ApiVersion) -> Result<(), Box<Response<Body>>> {
    if req.method() != Method::POST || !takes_json(req.uri().path()) {
        return Ok(());
    }
    let ct = req.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let ct = ct.unwrap_or_default();
    if ct.is_empty() && (length == Some(0) || (length.is_none() && !chunked)) {
        return Ok(());
    }
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" {
        return Ok(());
    }
    let message = if v.below("1.44") {
        format!("Content-Type specified ({ct}) must be 'application/json'")
    } else {
        format!("unsupported Content-Type header ({ct}): must be 'application/json'")
    };
    Err(Box::new(crate::version::error(StatusCode::BAD_REQUEST, &message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, ct: Option<&str>, body: &str) -> Request<Body> {
        let mut b = Request::builder().method("POST").uri(path);
        if let Some(ct) = ct {
            b = b.header("Content-Type", ct);
        }
        b.header("Content-Length", body.len().to_string()).body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn json_endpoints_refuse_other_content_types_in_the_clients_words() {
        let new = ApiVersion::parse("1.44").unwrap();
        let old = ApiVersion::parse("1.41").unwrap();
        let words = |r: Result<(), Box<Response<Body>>>| async move {
            let resp = *r.unwrap_err();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let b = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            String::from_utf8_lossy(&b).into_owned()
        };
        for path in ["/containers/create", "/containers/x/update", "/exec/e/start", "/commit", "/networks/n/connect"] {
            let m = words(check(&req(path, Some("text/plain"), "{}"), new)).await;
            assert!(m.contains("unsupported Content-Type header (text/plain): must be 'application/json'"), "{m}");
            let m = words(check(&req(path, Some("text/plain"), "{}"), old)).await;
            assert!(m.contains("Content-Type specified (text/plain) must be 'application/json'"), "{m}");
            assert!(check(&req(path, Some("application/json; charset=utf-8"), "{}"), new).is_ok());
            assert!(check(&req(path, Some("Application/JSON"), "{}"), new).is_ok());
            assert!(check(&req(path, None, ""), new).is_ok(), "no body, no type: fine");
            assert!(check(&req(path, None, "{}"), new).is_err(), "a body must say it is JSON");
        }
        // Endpoints whose bodies are not JSON, and other methods, are not checked.
        assert!(check(&req("/build", Some("application/x-tar"), "x"), new).is_ok());
        assert!(check(&req("/images/create", Some("application/x-tar"), "x"), new).is_ok());
        assert!(check(&req("/containers/x/archive", Some("application/x-tar"), "x"), new).is_ok());
        assert!(check(&req("/containers/x/start", None, "{}"), new).is_ok());
    }
}
