// Building the page without HTML strings: every piece of text becomes a text node, so a
// customer's "<script>" is shown as those characters and never parsed (docs/CONSOLE.md).

/**
 * An element: h("a", {href: "#/", class: "x"}, "text", otherNode).
 * Properties named on<event> add listeners; true sets an empty attribute; false/null skip.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "value" || name === "checked" || name === "selected") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append children: nodes as they are, anything else as text (never as markup). */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace everything inside `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** Set an element's text (textContent: never parsed as HTML). */
export function setText(element, text) {
  element.textContent = text === undefined || text === null ? "" : String(text);
}

/** Move keyboard focus to a view's heading, so screen readers announce the new view. */
export function focusHeading(root) {
  const heading = root.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

let idCounter = 0;
/** A document-unique id for label/control pairs. */
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}
