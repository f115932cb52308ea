// The model entry form: show only the fields of the chosen provider, and a "Test this model" button that runs
// one short generation with the values as typed (the server saves nothing on it).
(function () {
  "use strict";
  const FIELDS = {
    transformers: ["checkpoint_path", "prompt_format"],
    openai: ["base_url", "remote_model", "api_key_env"],
  };
  function ready() {
    const provider = document.getElementById("id_provider");
    if (!provider) return;
    const show = () => {
      Object.entries(FIELDS).forEach(([name, fields]) => {
        fields.forEach((field) => {
          const row = document.querySelector(".form-row.field-" + field) || document.querySelector(".field-" + field);
          if (row) row.style.display = provider.value === name ? "" : "none";
        });
      });
    };
    provider.addEventListener("change", show);
    show();
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
