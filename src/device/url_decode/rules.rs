//! The route table of the reference decoder (`@lark-project/meegle`
//! 1.0.23, `internal/products/meegle/commands/url_rules.go` of
//! larksuite/meegle-cli), itself taken from the Feishu Project web app's
//! router. Order matters: the first rule that matches wins, so specific
//! patterns come before the generic `:work_item_type` slot, and a pattern
//! ending in `*` matches any non-empty rest.

/// A path pattern, its `url_kind`, and a field it always sets.
pub struct Rule {
    pub pattern: &'static str,
    pub kind: &'static str,
    pub fixed: Option<(&'static str, &'static str)>,
}

const fn rule(pattern: &'static str, kind: &'static str) -> Rule {
    Rule {
        pattern,
        kind,
        fixed: None,
    }
}

const fn view(pattern: &'static str, kind: &'static str, work_item_type: &'static str) -> Rule {
    Rule {
        pattern,
        kind,
        fixed: Some(("work_item_type", work_item_type)),
    }
}

pub static RULES: &[Rule] = &[
    // Reserved top-level paths, before any `/:simple_name` rule.
    rule("/", "root"),
    rule("/workbench", "workbench"),
    rule("/workspaces", "workspaces"),
    rule("/favorites", "favorites"),
    rule("/inbox", "inbox"),
    rule("/teams", "teams"),
    rule("/list", "project_list"),
    rule("/templates", "templates"),
    rule("/tenant", "tenant_select"),
    rule("/home", "home_ka"),
    rule("/helpcenter", "helpcenter"),
    rule("/openapp", "openapp"),
    rule("/new-form", "quick_create_form"),
    rule("/issue-trans", "issue_trans"),
    rule("/jump-to-outer", "jump_to_outer"),
    rule("/light-share", "light_share"),
    rule("/channel-error", "channel_error"),
    rule("/enterprise_manage", "enterprise_manage"),
    rule("/fetch-cookie-by-login", "login_fetch_cookie"),
    rule("/login-asset", "login_asset"),
    rule("/switch-asset", "switch_asset"),
    rule("/teams/empty", "teams"),
    rule("/teams/detail/:team_id", "team_detail"),
    rule("/tenant/create", "tenant_create"),
    rule("/templates/manage", "template_manage"),
    rule("/templates/detail/:template_id", "template_detail"),
    rule("/issue-create-open/use-case", "issue_create_open_usecase"),
    rule("/story-create-open/:business_name", "story_create_open"),
    rule(
        "/aiApplication/ai_application_share",
        "ai_application_share",
    ),
    rule("/error-page/lark-page-404", "lark_page_404"),
    rule("/error-page/project-empty", "project_empty_page"),
    rule("/error-page/loading", "route_loading"),
    rule("/error-page/system-upgrade", "system_upgrade"),
    // System-scope pages under /b.
    rule("/b", "b_home"),
    rule("/b/noAuth", "no_project_auth"),
    rule("/b/preference", "preference"),
    rule("/b/mcp", "mcp_config"),
    rule("/b/mcp-config", "mcp_config"),
    rule("/b/ai", "ai_hub"),
    rule("/b/handover", "handover"),
    rule("/b/login", "login_datacenter"),
    rule("/b/price", "trial_price"),
    rule("/b/trial/enable", "trial_enable"),
    rule("/b/trial/new", "trial_new"),
    rule("/b/onboarding/task", "onboarding_task"),
    rule("/b/onboarding/operation-task", "onboarding_operation_task"),
    rule(
        "/b/onboarding/create-project-by-shared",
        "onboarding_create_shared",
    ),
    rule("/b/integration/slack/connect", "slack_connect"),
    rule("/b/cross/fail", "cross_fail"),
    rule("/b/cross/invite", "cross_invite"),
    rule("/b/auth/mcp", "mcp_auth"),
    rule("/b/auth/mcp-page", "mcp_auth"),
    rule("/b/resource/:user", "resource_handover"),
    rule(
        "/b/register-meego-unbundled/result",
        "unbundled_register_result",
    ),
    // Space settings: the multi-segment pages, then any other, then the root.
    rule(
        "/:simple_name/setting/workObject/:setting_type",
        "setting_workobject",
    ),
    rule(
        "/:simple_name/setting/workObjectSetting/advancedConfig",
        "setting_workobject_advanced",
    ),
    rule(
        "/:simple_name/setting/userGroup/:setting_type",
        "setting_user_group_legacy",
    ),
    rule("/:simple_name/setting/userGroupList", "setting_user_group"),
    rule(
        "/:simple_name/setting/permission/:setting_type",
        "setting_permission",
    ),
    rule(
        "/:simple_name/setting/permission_preview",
        "setting_permission_preview",
    ),
    rule(
        "/:simple_name/setting/applyCrossProjectSync",
        "setting_apply_cross_sync",
    ),
    rule("/:simple_name/setting/*", "setting_other"),
    rule("/:simple_name/setting", "setting_home"),
    // Import and data.
    rule("/:simple_name/jira-import", "import_jira"),
    rule("/:simple_name/import-ins-data", "import_excel"),
    rule("/:simple_name/data-recycle-page", "data_recycle"),
    // Preset homepages, before the generic work item homepage.
    rule("/:simple_name/user-gantt/homepage", "gantt_homepage"),
    rule(
        "/:simple_name/multi-project-view/homepage",
        "multi_project_homepage",
    ),
    rule("/:simple_name/chart/homepage", "chart_homepage"),
    rule("/:simple_name/sub_task/homepage", "subtask_homepage"),
    rule(
        "/:simple_name/project-overview/homepage",
        "project_overview_homepage",
    ),
    // Charts, before the generic work item detail.
    rule("/:simple_name/chart/detail/:chart_id", "chart_detail"),
    rule("/:simple_name/chart/create", "chart_create"),
    rule(
        "/:simple_name/chartdatascope/detail/:chart_id",
        "chart_datascope",
    ),
    rule(
        "/:simple_name/chartdatascopeV2/detail/:chart_id",
        "chart_datascope_v2",
    ),
    rule(
        "/:simple_name/chartpenetrate/default/detail/:chart_id",
        "chart_penetrate",
    ),
    rule(
        "/:simple_name/chartpenetrate/detail/:chart_id",
        "chart_penetrate",
    ),
    rule(
        "/:simple_name/chartpenetrate/small/detail/:chart_id",
        "chart_penetrate_small",
    ),
    rule(
        "/:simple_name/chartpenetrateV2/default/detail/:chart_id",
        "chart_penetrate_v2",
    ),
    rule(
        "/:simple_name/chartpenetrateV2/detail/:chart_id",
        "chart_penetrate_v2",
    ),
    rule(
        "/:simple_name/chartpenetrateV2/small/detail/:chart_id",
        "chart_penetrate_v2_small",
    ),
    // Views.
    view("/:simple_name/storyView/:view_id", "view_story", "story"),
    view("/:simple_name/issueView/:view_id", "view_issue", "issue"),
    rule(
        "/:simple_name/multiProjectView/:view_id",
        "view_multi_project",
    ),
    rule(
        "/:simple_name/project-overview/:view_id",
        "view_project_overview",
    ),
    rule("/:simple_name/userGantt/:view_id", "view_user_gantt"),
    rule("/:simple_name/workObjectView/chart/:view_id", "view_chart"),
    rule(
        "/:simple_name/workObjectView/:work_item_type/:view_id",
        "view_workitem",
    ),
    rule("/:simple_name/meegoPlg/:plugin_key", "plugin_page"),
    rule("/:simple_name/ai-assist", "project_ai_assist"),
    // Work items.
    rule(
        "/:simple_name/:work_item_type/detail/:work_item_id",
        "workitem_detail",
    ),
    rule("/:simple_name/:work_item_type/create", "workitem_create"),
    rule("/:simple_name/:work_item_type/draft", "workitem_draft"),
    rule(
        "/:simple_name/:work_item_type/homepage/:edit_str",
        "workitem_homepage_edit",
    ),
    rule(
        "/:simple_name/:work_item_type/homepage",
        "workitem_homepage",
    ),
    // The space itself.
    rule("/:simple_name/overview/:edit_str", "project_overview_edit"),
    rule("/:simple_name/overview", "project_overview"),
    rule("/:simple_name/empty", "project_empty"),
    rule("/:simple_name/404", "project_404"),
    rule("/:simple_name/401", "project_401"),
    rule("/:simple_name/500", "project_500"),
    rule("/:simple_name", "project_home"),
];

/// Legacy paths and the canonical path each stands for; one hop, and every
/// target is a path of [`RULES`].
pub static ALIASES: &[(&str, &str)] = &[
    ("/feishu_workbench_mobile", "/workbench"),
    ("/fetchCookieByLogin", "/fetch-cookie-by-login"),
    ("/loginAsset", "/login-asset"),
    ("/switchAsset", "/switch-asset"),
    ("/new_form", "/new-form"),
    ("/issue_trans", "/issue-trans"),
    ("/issue_create_open/use_case", "/issue-create-open/use-case"),
    (
        "/story_create_open/:business_name",
        "/story-create-open/:business_name",
    ),
    ("/jumpToOuter", "/jump-to-outer"),
    ("/light_share", "/light-share"),
    ("/:simple_name/jiraImport", "/:simple_name/jira-import"),
    (
        "/:simple_name/importInsData",
        "/:simple_name/import-ins-data",
    ),
];
