use crate::helpers::*;

#[test]
fn a_numeric_token_from_the_environment_is_a_string() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(1)));
    let run = sb.run_with_env(
        &["analyze", file.to_str().unwrap(), "--json"],
        &[("POWERPULSE_TOKEN", "123456")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = sb.run_with_env(&["uploads"], &[("POWERPULSE_TOKEN", "123456")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("123456"), "{}", run.stderr);
}

#[test]
fn a_bad_secret_is_not_printed() {
    let sb = Sandbox::new();
    let secret = "s3cr3t-do-not-print";
    let run = sb.run_with_env(
        &["uploads"],
        &[("POWERPULSE__ANALYZER__OPENAI__PRICES__GPT_KEY", secret)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("settings"), "{}", run.stderr);
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    assert!(!run.stdout.contains(secret), "{}", run.stdout);
}
