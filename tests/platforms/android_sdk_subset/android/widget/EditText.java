// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.widget;
import android.content.Context;
import android.text.Editable;
public class EditText extends TextView {
    public EditText(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public Editable getText() { throw new RuntimeException("Stub!"); }
}
