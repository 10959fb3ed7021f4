// Relative times, shared by the pages (inlined where they say
// RELATIVE_TIME): "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago".
function ago(iso) {
  const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (secs < 5) return "just now";
  if (secs < 60) return secs + " s ago";
  if (secs < 3600) return Math.floor(secs / 60) + " min ago";
  if (secs < 86400) return Math.floor(secs / 3600) + " h ago";
  return Math.floor(secs / 86400) + " d ago";
}

// A <time> saying how long ago `iso` was (the exact time as its title),
// kept current by keepTimesCurrent; a dash when there is no time.
function when(iso) {
  if (!iso) {
    const none = document.createElement("span");
    none.className = "empty"; none.textContent = "—";
    return none;
  }
  const t = document.createElement("time");
  t.dateTime = iso; t.dataset.at = iso; t.title = new Date(iso).toLocaleString(); t.textContent = ago(iso);
  return t;
}

// Relative times move on between updates.
function keepTimesCurrent(root) {
  setInterval(() => { for (const t of root.querySelectorAll("time[data-at]")) t.textContent = ago(t.dataset.at); }, 5000);
}
