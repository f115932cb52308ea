// The model entry form: show only the fields of the chosen provider (admin-test.js adds the "Test this model"
// button for those who may test models).
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
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
