//! The demo's path, in-process: every quickstart step happens and prints.

use lark_service::cli::demo::Demo;

#[actix_rt::test]
async fn the_demo_walks_every_quickstart_step() {
    let demo = Demo::start().await.expect("demo starts");
    let mut out = Vec::new();
    demo.walk(&mut out).await.expect("every step happens");
    let out = String::from_utf8(out).unwrap();
    for expected in [
        "✅ WebSocket connected!",
        "✅ Authorization card sent!",
        "Message ID: om_",
        "📨 Received card action event",
        "✅ Authorization completed!",
        "User: 张三 (zhangsan@example.com)",
        "| completed |",
        "✅ AI API call successful!",
        "finished: 1/1 users checked, 1 updated",
        "User: 张三 (Zhang San)",
        "lark_auth_completed_total{method=\"websocket_card\"}",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    demo.stop().await;
}
