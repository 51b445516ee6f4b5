"""Print the README's first two ```bash blocks (install + run the example; run the tests),
NUL-separated, so that CI runs exactly what a new user is told to run."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
if len(blocks) < 2:
    sys.exit(f"{sys.argv[1]}: expected the install and the test command as its first two ```bash blocks")
sys.stdout.write("\0".join(block.strip() for block in blocks[:2]))
