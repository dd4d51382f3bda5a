//! The documents the scenario files: a one-page PDF written by hand (objects, then a
//! cross-reference table with each object's offset), and the JSON forms of the flows' schemas.

/// A one-page PDF showing `lines` (ASCII) in Helvetica.
pub(crate) fn pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 760 Td 16 TL\n");
    for l in lines {
        let safe: String = l
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .map(|c| match c {
                '(' | ')' | '\\' => ' ',
                c => c,
            })
            .collect();
        content.push_str(&format!("({safe}) '\n"));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 595 842] >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
    ];
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cross_reference_table_points_at_each_object() {
        let p = super::pdf(&["Civil complaint (test)", "plaintiff: Ma"]);
        let text = String::from_utf8_lossy(&p).into_owned();
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert!(text.get(xref_at..).is_some_and(|t| t.starts_with("xref\n")));
        for (i, line) in text
            .get(xref_at..)
            .unwrap_or_default()
            .lines()
            .skip(3)
            .take(5)
            .enumerate()
        {
            let off: usize = line
                .get(..10)
                .and_then(|n| n.parse().ok())
                .unwrap_or_default();
            assert!(
                text.get(off..)
                    .is_some_and(|t| t.starts_with(&format!("{} 0 obj", i + 1))),
                "object {}",
                i + 1
            );
        }
        // the parentheses of the text are not PDF string delimiters
        assert!(text.contains("(Civil complaint  test ) '"));
    }
}
