//! The text of each mail: plain text, ASCII, one function per mail.

use super::Mail;
use crate::billing::money::format_usd;
use crate::format::datetime;

const SITE: &str = "llm-gateway";

fn mail(to: &str, subject: impl Into<String>, text: String) -> Mail {
    Mail {
        to: to.to_string(),
        subject: subject.into(),
        text,
    }
}

/// The link that proves the address given at sign-up.
pub fn verification(to: &str, link: &str) -> Mail {
    mail(
        to,
        "Verify your email address",
        format!(
            "Hello,\n\nPlease confirm that {to} is your address for your {SITE} account \
             by opening this link within 24 hours:\n\n{link}\n\n\
             The link works once. If you did not sign up, ignore this mail.\n"
        ),
    )
}

/// The link that sets a new password.
pub fn password_reset(to: &str, link: &str) -> Mail {
    mail(
        to,
        "Reset your password",
        format!(
            "Hello,\n\nSomeone (we hope you) asked to reset the password of your {SITE} \
             account. Open this link within 1 hour to choose a new one:\n\n{link}\n\n\
             The link works once, and setting a new password signs out every session. \
             If you did not ask, ignore this mail: your password stays as it is.\n"
        ),
    )
}

/// The link that moves an account to a new address.
pub fn email_change(to: &str, link: &str) -> Mail {
    mail(
        to,
        "Confirm your new email address",
        format!(
            "Hello,\n\nTo use {to} as the address of your {SITE} account, open this link \
             within 24 hours:\n\n{link}\n\n\
             Until then, the account keeps its current address. If you did not ask for \
             this, ignore this mail.\n"
        ),
    )
}

/// What a payment receipt states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The payment's id, as the balance page lists it.
    pub payment_id: String,
    /// The credit bought, in nano-USD.
    pub credit: i64,
    /// The processing fee, in nano-USD.
    pub fee: i64,
    /// What was charged, in the currency's cents.
    pub charged_cents: i64,
    /// ISO code, as configured (`usd`).
    pub currency: String,
    /// Epoch milliseconds.
    pub paid_at: i64,
    /// The balance after the credit, in nano-USD.
    pub balance_after: i64,
}

/// A receipt for a payment that added credit.
pub fn payment_receipt(to: &str, facts: &ReceiptFacts) -> Mail {
    let charged = format!(
        "{}.{:02} {}",
        facts.charged_cents / 100,
        facts.charged_cents.rem_euclid(100),
        facts.currency.to_uppercase()
    );
    mail(
        to,
        format!("Your receipt: ${} of credit", format_usd(facts.credit)),
        format!(
            "Thank you for your payment.\n\n\
             Payment:        {id}\n\
             Date:           {date}\n\
             Credit added:   ${credit}\n\
             Processing fee: ${fee}\n\
             Charged:        {charged}\n\
             Balance after:  ${balance}\n\n\
             Keep this mail as your receipt. The balance page lists every payment.\n",
            id = facts.payment_id,
            date = datetime(facts.paid_at),
            credit = format_usd(facts.credit),
            fee = format_usd(facts.fee),
            balance = format_usd(facts.balance_after),
        ),
    )
}

/// The balance fell below the threshold the user set.
pub fn low_balance(to: &str, balance: i64, threshold: i64, balance_page: &str) -> Mail {
    let threshold = format_usd(threshold);
    mail(
        to,
        "Your balance is low",
        format!(
            "Hello,\n\nYour {SITE} balance is now ${balance}, below the ${threshold} \
             you asked to be told about. Add credit here:\n\n{balance_page}\n\n\
             We will write again the next time it falls below ${threshold}.\n",
            balance = format_usd(balance),
        ),
    )
}

/// What a budget alert states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetFacts {
    /// The key's name, for a key's budget; `None` for the account's.
    pub key_name: Option<String>,
    /// Whether it is the monthly cap the user set on the key (not the
    /// operator's budget).
    pub own_cap: bool,
    /// 80 or 100 (percent).
    pub level: i64,
    pub spent: i64,
    pub max: i64,
    /// When the period ends; `None` if it never does.
    pub resets_at: Option<i64>,
}

/// A budget reached 80 % or all of its limit.
pub fn budget_alert(to: &str, facts: &BudgetFacts) -> Mail {
    let whose = match (&facts.key_name, facts.own_cap) {
        (Some(name), true) => format!("the monthly cap you set on your API key \"{name}\""),
        (Some(name), false) => format!("the budget of your API key \"{name}\""),
        (None, _) => "your account's budget".to_string(),
    };
    let subject = if facts.level >= 100 {
        format!("You have used all of {whose}")
    } else {
        format!("You have used {}% of {whose}", facts.level)
    };
    let consequence = if facts.level >= 100 {
        "Requests that would spend more are refused until it resets."
    } else {
        "Requests are refused once it is used up."
    };
    let resets = match facts.resets_at {
        Some(at) => format!("It resets on {}.", datetime(at)),
        None => "It does not reset.".to_string(),
    };
    mail(
        to,
        subject,
        format!(
            "Hello,\n\n{whose_cap} has spent ${spent} of its ${max} ({level}%). \
             {consequence} {resets}\n",
            whose_cap = capitalize(&whose),
            spent = format_usd(facts.spent),
            max = format_usd(facts.max),
            level = facts.level,
        ),
    )
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_go_in_the_text_as_they_are() {
        let link = "http://127.0.0.1:3000/verify-email?token=abc";
        let mail = verification("ada@example.com", link);
        assert_eq!(mail.to, "ada@example.com");
        assert_eq!(mail.subject, "Verify your email address");
        assert!(
            mail.text.contains(&format!("\n\n{link}\n\n")),
            "{}",
            mail.text
        );
        let reset = password_reset("ada@example.com", "http://x/reset-password?token=t");
        assert!(reset.text.contains("http://x/reset-password?token=t"));
        assert!(reset.text.contains("1 hour"));
        let change = email_change("new@example.com", "http://x/verify-email?token=u");
        assert!(change.text.contains("new@example.com") && change.text.contains("token=u"));
    }

    #[test]
    fn a_receipt_states_every_figure_in_money_format() {
        let facts = ReceiptFacts {
            payment_id: "pay_123".into(),
            credit: 10_000_000_000,
            fee: 300_000_000,
            charged_cents: 1030,
            currency: "usd".into(),
            paid_at: 1_795_444_140_000, // 2026-11-23 14:29 UTC
            balance_after: 12_500_000_000,
        };
        let mail = payment_receipt("ada@example.com", &facts);
        assert_eq!(mail.subject, "Your receipt: $10.00 of credit");
        for line in [
            "Payment:        pay_123",
            "Date:           2026-11-23 14:29 UTC",
            "Credit added:   $10.00",
            "Processing fee: $0.30",
            "Charged:        10.30 USD",
            "Balance after:  $12.50",
        ] {
            assert!(mail.text.contains(line), "{line:?} in {}", mail.text);
        }
        let cents = payment_receipt(
            "a@b.co",
            &ReceiptFacts {
                charged_cents: 507,
                ..facts
            },
        );
        assert!(cents.text.contains("Charged:        5.07 USD"));
    }

    #[test]
    fn a_low_balance_mail_names_the_balance_and_the_threshold() {
        let mail = low_balance(
            "ada@example.com",
            1_250_000_000,
            2_000_000_000,
            "http://x/b",
        );
        assert_eq!(mail.subject, "Your balance is low");
        assert!(mail.text.contains("$1.25") && mail.text.contains("$2.00"));
        assert!(mail.text.contains("http://x/b"));
    }

    #[test]
    fn budget_alerts_say_whose_budget_and_how_far() {
        let facts = BudgetFacts {
            own_cap: false,
            key_name: None,
            level: 80,
            spent: 850_000_000,
            max: 1_000_000_000,
            resets_at: None,
        };
        let mail = budget_alert("ada@example.com", &facts);
        assert_eq!(mail.subject, "You have used 80% of your account's budget");
        assert!(mail
            .text
            .contains("Your account's budget has spent $0.85 of its $1.00"));
        assert!(mail.text.contains("does not reset"));
        let full = budget_alert(
            "ada@example.com",
            &BudgetFacts {
                own_cap: false,
                key_name: Some("ci".into()),
                level: 100,
                resets_at: Some(1_796_083_200_000),
                ..facts
            },
        );
        assert_eq!(
            full.subject,
            "You have used all of the budget of your API key \"ci\""
        );
        assert!(
            full.text.contains("resets on 2026-12-01 00:00 UTC"),
            "{}",
            full.text
        );
    }

    #[test]
    fn every_mail_is_ascii() {
        let mails = [
            verification("a@b.co", "l"),
            password_reset("a@b.co", "l"),
            email_change("a@b.co", "l"),
            low_balance("a@b.co", 1, 2, "l"),
        ];
        for mail in mails {
            assert!(mail.subject.is_ascii() && mail.text.is_ascii(), "{mail:?}");
        }
    }
}
