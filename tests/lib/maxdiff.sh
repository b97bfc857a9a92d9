# Sourced by the CLI tests that compare logits: maxdiff A B prints max |a - b| over two files of JSON number
# lists (nesting ignored), line by line, or "length N vs M on line L" when a line's counts differ or are empty.
maxdiff() {
  paste -d '|' "$1" "$2" | awk -F'|' '{
    a = $1; b = $2; gsub(/[][ ]/, "", a); gsub(/[][ ]/, "", b);
    na = split(a, x, ","); nb = split(b, y, ",");
    if (na != nb || na == 0) { print "length " na " vs " nb " on line " NR; bad = 1; exit }
    for (i = 1; i <= na; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > m) m = d }
  } END { if (!bad) printf "%.3g\n", m }'
}
