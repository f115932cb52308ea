// The "Test this model" button on the model entry form, sent only to those who may test models: it runs one
// short generation with the values as typed (the server saves nothing on it).
(function () {
  "use strict";
  function ready() {
    const row = document.querySelector(".submit-row");
    if (row && !row.querySelector("[name=_test]")) {
      const test = document.createElement("input");
      test.type = "submit";
      test.name = "_test";
      test.value = "Test this model";
      test.title = "Ask the model one short question with the values above, without saving";
      row.prepend(test);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
