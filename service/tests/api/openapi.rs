//! API-1: the committed OpenAPI document and the real router describe the same routes.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use service::routes;

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(routes::docs::OPENAPI_JSON).unwrap();
    assert_eq!(
        doc["openapi"].as_str().unwrap().chars().next(),
        Some('3'),
        "OpenAPI 3"
    );
    let mut set = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            set.insert((method.to_uppercase(), path.clone()));
        }
    }
    set
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<(String, String)> = routes::endpoints()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    let documented = documented();
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from service/openapi.json"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented routes the router lacks"
    );
}

#[tokio::test]
async fn documented_methods_answer_and_others_are_405() {
    let app = common::TestApp::memory().await;
    let documented = documented();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let res = app.req(method.clone(), &concrete).send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            if documented.contains(&(method.to_string(), path.clone())) {
                let code = serde_json::from_str::<Value>(&body)
                    .ok()
                    .map(|b| b["error"]["code"].clone());
                assert!(
                    status != 405 && code != Some(Value::from("route_not_found")),
                    "{method} {path} is documented but answered {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is not documented but answered {status} {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_served_document_is_the_committed_file() {
    let app = common::TestApp::memory().await;
    let served: Value = test_support::fetch_json(app.client.get(app.url("/v1/openapi.json"))).await;
    assert_eq!(
        served,
        serde_json::from_str::<Value>(routes::docs::OPENAPI_JSON).unwrap()
    );
}
